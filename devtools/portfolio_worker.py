"""The portfolio worker (`python -m portfolio.worker`) started for real by a test or a benchmark, on
their database and run directory, and stopped (its whole process group) afterwards."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from devtools.servers import ROOT, project_env


@contextlib.contextmanager
def running_worker(
    *, database_url: str, run_dir: Path, log_path: Path, **env: str
) -> Iterator[subprocess.Popen[bytes]]:
    """The worker consuming `run_dir`'s queue. Start it after the app has migrated the database."""
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "portfolio.worker"],
            cwd=ROOT,
            env=project_env(
                DATABASE_URL=database_url,
                PORTFOLIO_RUN_DIR=str(run_dir),
                PORTFOLIO_PROGRESS_INTERVAL_S="0.1",
                **env,
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
