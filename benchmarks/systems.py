"""The systems under test, each started on free loopback ports and stopped on exit.

Processes are started with the project's own launcher (tests/utils/servers.py: a process group per
server, so stopping one ends every child it forked, e.g. BentoML's workers).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks import workload
from models import CARD_PATH, MODEL_NAME
from tests.utils import servers
from tests.utils.identity import cli_create_key
from tests.utils.servers import Server

ROOT = servers.ROOT
VENV_BIN = Path(sys.executable).parent


def committed_model_tag() -> str:
    """The tag of the committed pickle in the model store (its version is its sha256's first 16 digits)."""
    card = json.loads(CARD_PATH.read_text(encoding="utf-8"))
    return f"{MODEL_NAME}:{card['pickle_sha256'][:16]}"


@dataclass
class System:
    """What a load run needs: where to send, what to send, and which processes to watch."""

    name: str
    url: str
    path: str
    body: Callable[[dict[str, float], int], dict[str, object]]
    servers: dict[str, Server] = field(default_factory=dict)  # role -> server
    config: dict[str, Any] = field(default_factory=dict)

    def pids(self) -> dict[str, int]:
        return {role: s.process.pid for role, s in self.servers.items() if s.process is not None}


def wait_until(url: str, *, timeout_s: float, status: int = 200) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == status:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer {status} within {timeout_s:.0f}s")


def monolith_server(*, log_dir: Path) -> Server:
    port = servers.free_port()
    return Server(
        name="monolith",
        # One uvicorn process, as the original ran. No access log: the evaluation API runs without
        # one too, so that logging configuration does not decide the comparison.
        args=[
            str(VENV_BIN / "uvicorn"),
            "benchmarks.monolith.app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
        ],
        port=port,
        ready_path="/openapi.json",  # the original had no health endpoint; FastAPI's schema route answers once it is up
        # Its two prints per request go to this log, unbuffered as in a container's console, whatever
        # the caller's environment says.
        env=servers.project_env(PYTHONUNBUFFERED="1"),
        log_path=log_dir / f"monolith-{port}.log",
    )


def model_service_server(
    *,
    log_dir: Path,
    workers: int = 1,
    batching: bool = True,
    model_tag: str | None = None,
    port: int | None = None,
    **env: str,
) -> Server:
    return servers.model_service(
        port=port,
        log_dir=log_dir,
        MODEL_SERVICE_WORKERS=str(workers),
        MODEL_SERVICE_BATCHING="true" if batching else "false",
        MODEL_TAG=model_tag or committed_model_tag(),
        **env,
    )


def evaluation_api_server(*, log_dir: Path, model_url: str, db_path: Path, **env: str) -> Server:
    """The API, with a system key made on its database first (the documented command line) and handed to
    the load generators as BENCH_AUTHORIZATION: `/avaliar` is measured as a calling system makes it."""
    key = cli_create_key(f"sqlite:///{db_path}", "benchmark")
    os.environ["BENCH_AUTHORIZATION"] = f"Bearer {key}"
    return servers.evaluation_api(model_url=model_url, database_url=f"sqlite:///{db_path}", log_dir=log_dir, **env)


@contextlib.contextmanager
def monolith(*, log_dir: Path) -> Iterator[System]:
    with monolith_server(log_dir=log_dir) as server:
        yield System(
            "monolith",
            server.url,
            "/avaliar",
            workload.avaliar_body,
            {"monolith": server},
            {"processes": "1 uvicorn process, model in memory"},
        )


@contextlib.contextmanager
def model_service(*, log_dir: Path, workers: int, batching: bool) -> Iterator[System]:
    server = model_service_server(log_dir=log_dir, workers=workers, batching=batching)
    with contextlib.closing(_Stopper(server)):
        server.start(timeout=120)
        name = f"model service, batching {'on' if batching else 'off'}, {workers} worker{'s' if workers > 1 else ''}"
        yield System(
            name,
            server.url,
            "/predict",
            workload.predict_body,
            {"model_service": server},
            {"workers": workers, "batching": batching},
        )


@contextlib.contextmanager
def end_to_end(*, log_dir: Path, db_path: Path, model_workers: int = 1, path: str = "/avaliar") -> Iterator[System]:
    """The new architecture: the evaluation API (decision records on, SQLite) in front of the model service."""
    model = model_service_server(log_dir=log_dir, workers=model_workers)
    with contextlib.closing(_Stopper(model)):
        model.start(timeout=120)
        api = evaluation_api_server(log_dir=log_dir, model_url=model.url, db_path=db_path)
        with contextlib.closing(_Stopper(api)):
            api.start(timeout=60)
            wait_until(api.url + "/readyz", timeout_s=30)
            body = workload.avaliar_body if path == "/avaliar" else workload.evaluation_body
            yield System(
                f"evaluation API → model service ({model_workers} worker{'s' if model_workers > 1 else ''})",
                api.url,
                path,
                body,
                {"evaluation_api": api, "model_service": model},
                {"model_workers": model_workers, "records": "SQLite (WAL, synchronous=FULL)"},
            )


class _Stopper:
    """contextlib.closing() adapter: stop the server whatever happened."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def close(self) -> None:
        self.server.stop()
