"""Fixtures for the evaluation API: the app in process on a tmp SQLite file, its model service a stub
on a real socket (tests/utils/evaluations.py), and PostgreSQL databases when DATABASE_URL names a server."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, make_url

from decisioning.policy import Policy, load_policy
from evaluation_api.config import POLICY_PATH
from evaluation_api.database import make_engine
from evaluation_api.identity.roles import Role
from evaluation_api.main import create_app
from evaluation_api.migrate import upgrade
from tests import conftest as root_conftest
from tests.utils.evaluations import (
    SEGMENT_CUSTOMERS,
    ModelServiceStub,
    TestClient,
    make_settings,
    predict,
    remove_app_log_handlers,
)
from tests.utils.identity import sign_in_as

PACKAGED_POLICY = POLICY_PATH


@pytest.fixture(scope="session")
def policy() -> Policy:
    return load_policy(PACKAGED_POLICY)


@pytest.fixture(scope="session")
def _pipeline_loaded() -> None:
    """Unpickle the committed pipeline once, before any stub answers: loading it inside the stub's handler
    would block the app's event loop for a second or more, past the evaluation deadline."""
    predict([SEGMENT_CUSTOMERS["least_active"]])


@pytest.fixture
def stub(_pipeline_loaded: None) -> Iterator[ModelServiceStub]:
    with ModelServiceStub() as serving:
        yield serving


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """create_app's lifespan installs a JSON handler on the root logger and sets its level: undo both."""
    level = logging.getLogger().level
    yield
    remove_app_log_handlers()
    logging.getLogger().setLevel(level)


@pytest.fixture
def start_app(tmp_path: Path, stub: ModelServiceStub) -> Iterator[Callable[..., Any]]:
    """`with start_app(**settings) as client:` the app, lifespan run, on `stub`; `client.app` is the app.

    Settings default to a SQLite file in tmp_path (tests/utils/evaluations.make_settings). The client is
    signed in as an account named `analyst` (role analyst); `as_role=Role.X` signs in as an account named
    after role X instead, `as_role=None` leaves it anonymous."""

    @contextmanager
    def start(*, as_role: Role | None = Role.ANALYST, **overrides: Any) -> Iterator[TestClient]:
        app = create_app(stub.settings(make_settings(tmp_path, **overrides)))
        with TestClient(app, raise_server_exceptions=False) as client:
            if as_role is not None:  # an account of that role, named after it (tests/utils/identity.py)
                sign_in_as(client, as_role, username=as_role.value)
            yield client

    yield start


@pytest.fixture
def client(start_app: Callable[..., Any]) -> Iterator[TestClient]:
    """The app with default settings (SQLite in tmp_path) in front of `stub`."""
    with start_app() as c:
        yield c


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "evaluations.db"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite file of records (records.db), with short statement and lock timeouts."""
    engine = make_engine(f"sqlite:///{tmp_path / 'records.db'}", statement_timeout_s=0.2, lock_timeout_s=0.1)
    upgrade(engine)
    yield engine
    engine.dispose()


def app_of(client: TestClient) -> FastAPI:
    app: FastAPI = client.app  # type: ignore[assignment]
    return app


# --- PostgreSQL ---------------------------------------------------------------------------------------


def _maintenance_conninfo() -> str:
    url = make_url(root_conftest.POSTGRES_URL).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[Callable[[], str]]:
    """`new()` creates a fresh database on the DATABASE_URL server and returns its SQLAlchemy URL; every
    one is dropped at the end of the session. Skips when DATABASE_URL named no PostgreSQL server."""
    if not root_conftest.POSTGRES_URL:
        pytest.skip("DATABASE_URL does not name a PostgreSQL server (CI's second pass sets it)")
    import psycopg

    created: list[str] = []
    conninfo = _maintenance_conninfo()

    def new() -> str:
        name = f"evaluations_test_{secrets.token_hex(6)}"
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        url = make_url(root_conftest.POSTGRES_URL).set(drivername="postgresql+psycopg", database=name)
        return url.render_as_string(hide_password=False)

    yield new
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as connection:
        for name in created:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
