"""The systems under test, each started on free loopback ports and stopped on exit.

Processes are started with the project's own launcher (devtools/servers.py: a process group per
server, so stopping one ends every child it forked, e.g. BentoML's workers). The end-to-end system
is `make run` itself, so that what is measured is what a user runs, with its defaults.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from benchmarks import workload
from devtools import servers
from devtools.servers import Server
from models import CARD_PATH, MODEL_NAME

ROOT = servers.ROOT
VENV_BIN = Path(sys.executable).parent

# The one place where requests to the evaluation API get their credentials (`Authorization: Bearer
# <system key>`). Each API the harness starts gets a system key made on its database first, with the
# documented command line (`python -m evaluation_api.identity.accounts create-key`), before it starts; the
# latest one is kept in BENCH_AUTHORIZATION. BENCH_API_KEY (or --api-key) names a key instead, for an
# API whose accounts are managed elsewhere. BENCH_API_ENV (KEY=VALUE pairs, comma-separated)
# reaches the API's own environment.
API_KEY_ENV = "BENCH_API_KEY"
API_ENV_ENV = "BENCH_API_ENV"
AUTHORIZATION_ENV = "BENCH_AUTHORIZATION"


def create_system_key(database_url: str, name: str = "benchmark") -> str:
    """A system key on that database (`python -m evaluation_api.identity.accounts create-key NAME --role system`)."""
    done = subprocess.run(
        [sys.executable, "-m", "evaluation_api.identity.accounts", "create-key", name, "--role", "system"],
        cwd=ROOT,
        env=servers.project_env(DATABASE_URL=database_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"could not create a system key: {done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


def authorize(database_url: str) -> None:
    """Make the key the load tools will send to the API on that database (unless BENCH_API_KEY names one)."""
    if not os.environ.get(API_KEY_ENV):
        os.environ[AUTHORIZATION_ENV] = f"Bearer {create_system_key(database_url)}"


def evaluation_api_headers() -> dict[str, str]:
    if key := os.environ.get(API_KEY_ENV):
        return {"Authorization": f"Bearer {key}"}
    if authorization := os.environ.get(AUTHORIZATION_ENV):
        return {"Authorization": authorization}
    return {}


def evaluation_api_env() -> dict[str, str]:
    pairs = [p for p in os.environ.get(API_ENV_ENV, "").split(",") if p.strip()]
    return dict(p.strip().split("=", 1) for p in pairs)


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
    # role -> the pid of the process whose tree it is, or the pids of its processes (the API's under
    # `make run`: one supervisor program per process)
    roles: dict[str, int | list[int]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # sent with every request (credentials)
    # The people who change its policy, when it has a challenger (benchmarks/change_control.Operators).
    control: Any = None

    def pids(self) -> dict[str, int | list[int]]:
        return dict(self.roles)


def wait_until(url: str, *, timeout_s: float, status: int = 200, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0, headers=headers).status_code == status:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer {status} within {timeout_s:.0f}s")


def api_processes() -> int:
    """How many evaluation API processes `make run` starts here (the Makefile's API_WORKERS: one per
    core): the worker count of the fair monolith baseline."""
    return int(os.environ.get("API_WORKERS") or os.cpu_count() or 1)


def monolith_server(*, log_dir: Path, workers: int = 1) -> Server:
    """The original monolith: one uvicorn process, as it ran; `workers` > 1 is the same app under
    uvicorn's own --workers, the way the original would have been given more cores."""
    port = servers.free_port()
    return Server(
        name="monolith" if workers == 1 else f"monolith-{workers}w",
        # No access log: the evaluation API runs without one too, so that logging configuration does
        # not decide the comparison.
        args=[
            str(VENV_BIN / "uvicorn"),
            "benchmarks.monolith.app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            *(["--workers", str(workers)] if workers > 1 else []),
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
    workers: int | None = None,
    batching: bool = True,
    model_tag: str | None = None,
    port: int | None = None,
    **env: str,
) -> Server:
    """The model service; `workers=None` keeps its own default (what `make run` gets)."""
    if workers is not None:
        env["MODEL_SERVICE_WORKERS"] = str(workers)
    return servers.model_service(
        port=port,
        log_dir=log_dir,
        MODEL_SERVICE_BATCHING="true" if batching else "false",
        MODEL_TAG=model_tag or committed_model_tag(),
        **env,
    )


def evaluation_api_server(*, log_dir: Path, model_url: str, db_path: Path, **env: str) -> Server:
    """The API, with a system key made on its database first (see evaluation_api_headers)."""
    authorize(f"sqlite:///{db_path}")
    return servers.evaluation_api(
        model_url=model_url, database_url=f"sqlite:///{db_path}", log_dir=log_dir, **evaluation_api_env(), **env
    )


@contextlib.contextmanager
def monolith(*, log_dir: Path, workers: int = 1) -> Iterator[System]:
    with monolith_server(log_dir=log_dir, workers=workers) as server:
        if workers > 1:
            # uvicorn's supervisor forks its workers after the port answers; wait until every one is up,
            # so that the first measured point does not pay for their imports.
            deadline = time.monotonic() + 60
            while _workers(_pid(server)) < workers and time.monotonic() < deadline:
                time.sleep(0.2)
        yield System(
            "monolith" if workers == 1 else f"monolith, {workers} workers",
            server.url,
            "/avaliar",
            workload.avaliar_body,
            {"monolith": _pid(server)},
            {
                "processes": "1 uvicorn process, model in memory"
                if workers == 1
                else f"uvicorn --workers {workers} (a supervisor and {workers} processes), model in memory in each"
            },
        )


def _pid(server: Server) -> int:
    assert server.process is not None, f"{server.name} is not running"
    return server.process.pid


def _workers(pid: int | list[int]) -> int:
    """How many processes serve (a process tree: an arbiter and its workers count as its workers)."""
    if isinstance(pid, list):
        return len(pid)
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    return max(1, len(children))


@contextlib.contextmanager
def model_service(*, log_dir: Path, workers: int | None = None, batching: bool = True, **env: str) -> Iterator[System]:
    """The model service alone; `workers=None`: its default configuration, as `make run` starts it."""
    server = model_service_server(log_dir=log_dir, workers=workers, batching=batching, **env)
    with contextlib.closing(_Stopper(server)):
        server.start(timeout=120)
        if workers is None:
            name = "model service (default configuration)"
        else:
            name = (
                f"model service, batching {'on' if batching else 'off'}, {workers} worker{'s' if workers > 1 else ''}"
            )
        yield System(
            name,
            server.url,
            "/predict",
            workload.predict_body,
            {"model_service": _pid(server)},
            {"workers": workers if workers is not None else "default", "batching": batching},
        )


class MakeRun(Server):
    """`make run` on free ports, with its records in a file of our own and its portfolio runs (uploads,
    results, the worker's queue) in a directory of its own, never the checkout's var/; stopped as
    Ctrl-C would."""

    def __init__(self, *, log_dir: Path, db_path: Path, **env: str) -> None:
        model_port, api_port = servers.free_port(), servers.free_port()
        self.run_dir = log_dir / f"make-run-{api_port}"
        super().__init__(
            name="make run",
            args=["make", "--no-print-directory", "run"],
            port=api_port,
            ready_path="/readyz",
            env=servers.project_env(
                MODEL_SERVICE_PORT=str(model_port),
                API_PORT=str(api_port),
                RUN_DIR=str(self.run_dir),
                DATABASE_URL=f"sqlite:///{db_path}",
                PORTFOLIO_RUN_DIR=str(self.run_dir / "portfolio-runs"),
                **env,
            ),
            log_path=log_dir / f"make-run-{api_port}.log",
        )
        self.model_port = model_port

    def program_pids(self, program: str) -> list[int]:
        """The pids of one of local/supervisord.conf's programs: one, or one per process when the
        program runs several (numprocs: the API's processes)."""
        out = subprocess.run(
            [str(VENV_BIN / "supervisorctl"), "-c", str(ROOT / "local" / "supervisord.conf"), "status"],
            env=dict(self.env),
            capture_output=True,
            text=True,
            check=False,  # status exits non-zero while any program is not running
        )
        # "evaluation-api:evaluation-api-0   RUNNING   pid 123, uptime 0:00:05", or "model-service ..."
        pids = [
            int(line.split("pid ", 1)[1].split(",", 1)[0])
            for line in out.stdout.splitlines()
            if line.split(" ", 1)[0].split(":", 1)[0] == program and "RUNNING" in line
        ]
        if not pids:
            raise RuntimeError(f"supervisor runs no {program} process: {out.stdout}")
        return pids

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            tree = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            tree = []
        # Ctrl-C: make and supervisord get SIGINT; supervisord stops its programs' process groups.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        _, alive = psutil.wait_procs(tree, timeout=10)
        for process in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()


@contextlib.contextmanager
def make_run(*, log_dir: Path, db_path: Path, path: str = "/avaliar", **env: str) -> Iterator[System]:
    """The whole system as `make run` starts it (its own defaults: workers, records in SQLite), on
    free ports; only the records' file is ours, so the checkout's var/ is never touched. `env`
    reaches both programs (to measure a variant)."""
    authorize(f"sqlite:///{db_path}")
    server = MakeRun(log_dir=log_dir, db_path=db_path, **{**evaluation_api_env(), **env})
    with contextlib.closing(_Stopper(server)):
        server.start(timeout=300)
        headers = evaluation_api_headers()
        roles = {
            "evaluation_api": server.program_pids("evaluation-api"),
            "model_service": server.program_pids("model-service")[0],
        }
        body = workload.avaliar_body if path == "/avaliar" else workload.evaluation_body
        yield System(
            "evaluation API → model service (make run)",
            server.url,
            path,
            body,
            roles,
            {
                "launcher": "make run (local/supervisord.conf)",
                "evaluation_api_processes": _workers(roles["evaluation_api"]),
                "model_service_processes": _workers(roles["model_service"]),
                "records": "SQLite",
            },
            headers,
        )


@contextlib.contextmanager
def make_run_with_challenger(*, log_dir: Path, db_path: Path, path: str = "/avaliar", **env: str) -> Iterator[System]:
    """The same `make run`, with a challenger deciding every evaluation again in shadow: a candidate
    policy that differs from the live one (benchmarks/change_control.py), registered and started
    through the API by a risk user before any load, so that each measured evaluation is shadowed."""
    from benchmarks import change_control

    with make_run(log_dir=log_dir, db_path=db_path, path=path, **env) as system:
        operators = change_control.Operators.sign_up(system.url, f"sqlite:///{db_path}")
        live = change_control.live_policy_version(system.url, operators.author)
        challenger = operators.start_challenger(f"{live}-bench-candidate")
        # Every API process reads the registry every RELEASE_POLL_S (0.5 s by default): wait a few reads.
        time.sleep(2.0)
        system.name = "evaluation API → model service (make run), a challenger in shadow"
        system.config = {**system.config, "challenger": {"live_policy_version": live, **challenger}}
        system.control = operators
        yield system


@contextlib.contextmanager
def end_to_end(*, log_dir: Path, db_path: Path, model_workers: int = 1, path: str = "/avaliar") -> Iterator[System]:
    """The evaluation API (decision records on, SQLite) in front of a model service with a given number
    of workers: for the experiments that vary one process while keeping the other fixed."""
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
                {"evaluation_api": _pid(api), "model_service": _pid(model)},
                {"model_workers": model_workers, "records": "SQLite"},
                evaluation_api_headers(),
            )


class _Stopper:
    """contextlib.closing() adapter: stop the server whatever happened."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def close(self) -> None:
        self.server.stop()
