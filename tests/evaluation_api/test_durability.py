"""The SQLite records' durability setting reaches every connection, and nothing else is accepted."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from evaluation_api.config import Settings
from evaluation_api.database import make_engine

# PRAGMA synchronous answers a number: 1 is NORMAL, 2 is FULL.
LEVELS = {"NORMAL": 1, "FULL": 2}


@pytest.mark.parametrize("level", ["NORMAL", "FULL"])
def test_each_connection_gets_wal_and_the_configured_synchronous_level(tmp_path: Path, level: str) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'records.db'}", sqlite_synchronous=level)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert connection.execute(text("PRAGMA synchronous")).scalar() == LEVELS[level]
    finally:
        engine.dispose()


def test_the_default_keeps_a_commit_across_a_crash_of_the_process_not_a_power_cut() -> None:
    assert Settings().sqlite_synchronous == "NORMAL"


def test_an_unknown_level_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="sqlite_synchronous"):
        make_engine(f"sqlite:///{tmp_path / 'records.db'}", sqlite_synchronous="OFF")
    monkeypatch.setenv("SQLITE_SYNCHRONOUS", "OFF")
    with pytest.raises(ValueError, match="sqlite_synchronous"):
        Settings()
