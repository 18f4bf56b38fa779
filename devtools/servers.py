"""Start the project's real processes on free loopback ports (tests and benchmarks), and stop them afterwards."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from evaluation_api.config import Settings

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The project's own settings: a server a test starts sees only what the test passes. Every variable
# the API's Settings reads, derived from the class itself, and those the model service, BentoML and
# OpenTelemetry read from the environment directly (service.py).
PROJECT_ENV_VARS: tuple[str, ...] = tuple(
    sorted(
        {name.upper() for name in Settings.model_fields}
        | {
            "MODEL_TAG",
            "MODEL_CARD_PATH",
            "MODEL_SERVICE_WORKERS",
            "MODEL_SERVICE_ACCESS_LOG",
            "MODEL_SERVICE_BATCHING",
            "BENTOML_CONFIG",
            "BENTOML_CONFIG_OPTIONS",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_SERVICE_NAME",
        }
    )
)


def project_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PROJECT_ENV_VARS}
    env.setdefault("BENTOML_HOME", str(ROOT / ".bentoml"))
    env["BENTOML_DO_NOT_TRACK"] = "true"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


@dataclass
class Server:
    """A process started in its own session, so that stop() ends it and every child it forked."""

    name: str
    args: list[str]
    port: int
    ready_path: str
    env: Mapping[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 60.0) -> Server:
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.process = subprocess.Popen(
                self.args,
                cwd=ROOT,
                env=dict(self.env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            # The child has its own copy of the descriptor; ours, left open, is a ResourceWarning (an error here).
            if log is not subprocess.DEVNULL:
                log.close()
        self.wait_ready(timeout=timeout)
        return self

    def wait_ready(self, *, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log_path}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"{self.name} not ready on {self.url}{self.ready_path} after {timeout:.0f}s; see {self.log_path}"
        )

    def kill(self) -> None:
        """Kill the process group at once (SIGKILL): a crash, not a shutdown."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def _signal(self, sig: signal.Signals) -> None:
        """Signal the whole tree: `bentoml serve` forks its workers into process groups of their own."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            tree = [self.process.pid, *(c.pid for c in psutil.Process(self.process.pid).children(recursive=True))]
        except psutil.NoSuchProcess:
            tree = [self.process.pid]
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig) if pid == self.process.pid else os.kill(pid, sig)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
        # Wait for the children too (a killed arbiter's worker must not keep answering on the port).
        _, alive = psutil.wait_procs([p for p in _existing(tree[1:])], timeout=10)
        for process in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _existing(pids: list[int]) -> list[psutil.Process]:
    out = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            out.append(psutil.Process(pid))
    return out


def model_service(*, port: int | None = None, log_dir: Path | None = None, **env: str) -> Server:
    """The Bento served for real (`bentoml serve`); `start()` it. Needs the model imported."""
    port = port or free_port()
    return Server(
        name="model service",
        args=[
            str(VENV_BIN / "bentoml"),
            "serve",
            "service:CreditCardSegmentation",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        port=port,
        ready_path="/readyz",
        env=project_env(**env),
        log_path=(log_dir / f"model-service-{port}.log") if log_dir else None,
    )


def evaluation_api(
    *, model_url: str, database_url: str, port: int | None = None, log_dir: Path | None = None, **env: str
) -> Server:
    """The evaluation API (and the form) under uvicorn; `start()` it."""
    port = port or free_port()
    return Server(
        name="evaluation API",
        args=[
            str(VENV_BIN / "uvicorn"),
            "evaluation_api.main:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
        ],
        port=port,
        ready_path="/healthz",
        # A signing key of its own (never the checkout's var/signing.key); a test may pass one.
        env=project_env(
            MODEL_SERVICE_URL=model_url,
            DATABASE_URL=database_url,
            **{"AUTH_SIGNING_KEY": secrets.token_urlsafe(48), **env},
        ),
        log_path=(log_dir / f"evaluation-api-{port}.log") if log_dir else None,
    )
