"""`make run`, as a user runs it: both services up, the model service restarted after a crash while
the evaluation API keeps answering (503), and Ctrl-C stopping everything."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.utils.evaluations import body as valid_evaluation
from tests.utils.identity import bearer, cli_create_account, cli_create_key, token_for
from tests.utils.servers import ROOT, free_port, project_env

pytestmark = pytest.mark.slow


def _poll(predicate, *, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


class RunningSystem:
    def __init__(self, tmp_path: Path) -> None:
        self.model_port, self.api_port = free_port(), free_port()
        self.run_dir = tmp_path / "run"
        self.env = project_env(
            MODEL_SERVICE_PORT=str(self.model_port),
            API_PORT=str(self.api_port),
            RUN_DIR=str(self.run_dir),
            DATABASE_URL=f"sqlite:///{tmp_path / 'evaluations.db'}",
            BREAKER_TTL_S="1",
            PORTFOLIO_RUN_DIR=str(tmp_path / "portfolio-runs"),
        )
        self.log_path = tmp_path / "make-run.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.api = f"http://127.0.0.1:{self.api_port}"

    def supervisor_pid(self, program: str) -> int:
        out = subprocess.run(
            [str(ROOT / ".venv/bin/supervisorctl"), "-c", str(ROOT / "local/supervisord.conf"), "pid", program],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return int(out.stdout.strip())

    def evaluate(self) -> httpx.Response:
        return httpx.post(
            f"{self.api}/api/v1/evaluations", json=valid_evaluation(), headers=bearer(self.key), timeout=10
        )

    key = ""  # a system key, made once the system is up (the documented command line)

    def printed_admin_password(self) -> str:
        """What `make run` printed on its first start: the admin account's password."""
        self.log.flush()
        text = (self.log_path).read_text(encoding="utf-8", errors="replace")
        match = re.search(r"Usuário: admin\s+Senha:\s+(\S+)", text)
        assert match, text[-3000:]
        return match.group(1)

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT to the foreground process group (make and supervisord)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(timeout=60)
        finally:
            self.log.close()


@pytest.fixture
def system(tmp_path: Path) -> Iterator[RunningSystem]:
    running = RunningSystem(tmp_path)
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.interrupt()
        if running.process.poll() is None:
            os.killpg(running.process.pid, signal.SIGKILL)


def _refused(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
    except httpx.ConnectError:
        return True
    except httpx.HTTPError:
        return False
    return False


def test_make_run_serves_survives_a_model_crash_and_stops_on_ctrl_c(system: RunningSystem) -> None:
    _poll(
        lambda: httpx.get(f"{system.api}/readyz", timeout=2).status_code == 200,
        timeout=180,
        what="the system to be ready",
    )

    page = httpx.get(f"{system.api}/", timeout=5)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    # Nothing is answered without a credential; the admin account printed on the first start signs in.
    anonymous = httpx.post(f"{system.api}/api/v1/evaluations", json=valid_evaluation(), timeout=10)
    assert anonymous.status_code == 401
    admin = token_for(system.api, "admin", system.printed_admin_password())
    me = httpx.get(f"{system.api}/api/v1/auth/me", headers=bearer(admin), timeout=5)
    assert me.json()["roles"] == ["admin"]
    # The key file `make run` signs tokens with is private to its owner.
    assert (system.run_dir / "signing.key").stat().st_mode & 0o777 == 0o600
    system.key = cli_create_key(system.env["DATABASE_URL"], "make-run-test")
    assert system.evaluate().status_code == 201

    # The portfolio worker runs beside the API: an analyst's upload is scored to the end.
    cli_create_account(system.env["DATABASE_URL"], "ana.carteira", "analyst")
    analyst = bearer(token_for(system.api, "ana.carteira"))
    upload = httpx.post(
        f"{system.api}/api/v1/portfolio-runs",
        files={"file": ("c.csv", b"CUST_ID,BALANCE,PURCHASES,CASH_ADVANCE,CREDIT_LIMIT,PAYMENTS\nC1,10,20,0,900,30\n")},
        headers=analyst,
        timeout=10,
    )
    assert upload.status_code == 202, upload.text
    run_url = f"{system.api}/api/v1/portfolio-runs/{upload.json()['id']}"
    _poll(
        lambda: httpx.get(run_url, headers=analyst, timeout=5).json()["status"] == "succeeded",
        timeout=180,
        what="the portfolio run to succeed",
    )

    # Crash the model service: SIGKILL, as the OOM killer would.
    old_pid = system.supervisor_pid("model-service")
    os.kill(old_pid, signal.SIGKILL)

    # BentoML's workers outlive their parent by up to a second or so and answer meanwhile; from then
    # until the restarted service is ready, the API answers 503 at once instead of waiting.
    statuses: list[httpx.Response] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not any(r.status_code == 503 for r in statuses):
        statuses.append(system.evaluate())
        time.sleep(0.05)
    assert any(r.status_code == 503 for r in statuses), [r.status_code for r in statuses]
    for response in statuses:
        assert response.status_code in (201, 503)
        if response.status_code == 503:
            assert response.json()["error"] == "model_unavailable"
            assert int(response.headers["retry-after"]) >= 1
    assert httpx.get(f"{system.api}/healthz", timeout=2).status_code == 200

    # Supervisor restarts it; evaluations recover by themselves.
    _poll(lambda: system.evaluate().status_code == 201, timeout=120, what="evaluations to succeed after the restart")
    assert system.supervisor_pid("model-service") != old_pid

    assert system.interrupt() is not None
    assert _refused(system.api_port) and _refused(system.model_port)
