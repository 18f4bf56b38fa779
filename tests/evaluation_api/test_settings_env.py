"""A variable set in a developer's shell never changes what a test sees: the autouse fixture clears
every variable Settings reads, whatever its name (the list is derived from the class)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from evaluation_api.config import Settings
from tests.utils.servers import PROJECT_ENV_VARS, ROOT

PROBE = Path(__file__).resolve().parent / "probes" / "settings_seen_by_a_test.py"


def test_every_variable_settings_reads_is_cleared_for_tests() -> None:
    assert {name.upper() for name in Settings.model_fields} <= set(PROJECT_ENV_VARS)


def test_settings_set_in_the_shell_do_not_reach_a_test() -> None:
    shell = {
        "RECORD_QUEUE_MAX": "3",
        "MODEL_RETRY_ATTEMPTS": "1",
        "EVALUATION_DEADLINE_S": "9",
        "RECORD_INLINE": "false",
    }
    env = {k: v for k, v in __import__("os").environ.items() if k not in PROJECT_ENV_VARS} | shell
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(PROBE)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:]
