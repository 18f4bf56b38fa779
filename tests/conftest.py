"""Fixtures shared by every layer: a clean environment, and the real processes for the slow tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.utils import servers
from tests.utils.servers import PROJECT_ENV_VARS

# Read before the autouse fixture below clears it: .ci/run sets DATABASE_URL (PostgreSQL) for a
# second pass of the record tests.
POSTGRES_URL = os.environ.get("DATABASE_URL", "") if os.environ.get("DATABASE_URL", "").startswith("postgresql") else ""

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@pytest.fixture(autouse=True)
def _clean_project_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROJECT_ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def model_service_server(artifacts_dir: Path) -> Iterator[servers.Server]:
    """The model service started for real with `bentoml serve`, once per test session."""
    server = servers.model_service(log_dir=artifacts_dir).start(timeout=120)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def evaluation_api_server(
    model_service_server: servers.Server, artifacts_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[servers.Server]:
    """The evaluation API started for real under uvicorn, on a fresh SQLite file, in front of the real model service."""
    db = tmp_path_factory.mktemp("db") / "evaluations.db"
    server = servers.evaluation_api(
        model_url=model_service_server.url, database_url=f"sqlite:///{db}", log_dir=artifacts_dir
    ).start(timeout=60)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def evaluation_api_key(evaluation_api_server: servers.Server) -> str:
    """A system key (role system) on `evaluation_api_server`'s database, made with the documented command
    line: send it as `Authorization: Bearer <key>` (tests/utils/identity.py)."""
    from tests.utils.identity import cli_create_key

    return cli_create_key(evaluation_api_server.env["DATABASE_URL"], "session-system")
