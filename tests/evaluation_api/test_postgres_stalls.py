"""PostgreSQL under a lock and concurrent migrations, for real (CI's second pass: `-m postgres` with
DATABASE_URL on the machine's server). Each test has a database of its own (conftest.postgres_databases),
dropped at the end of the session, so nothing here disturbs another test."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import make_url, text
from sqlalchemy.exc import OperationalError

from evaluation_api.database import make_engine
from evaluation_api.main import create_app
from evaluation_api.migrate import MIGRATION_LOCK_KEY, upgrade
from evaluation_api.privacy.encryption import DataKeys
from tests.utils.evaluations import body, make_settings
from tests.utils.identity import analyst_headers
from tests.utils.servers import ROOT, project_env

pytestmark = pytest.mark.postgres

URL = "/api/v1/evaluations"
TIMEOUTS = {"database_lock_timeout_s": 0.3, "database_statement_timeout_s": 0.6, "record_commit_timeout_s": 1.5}
MARGIN_S = 2.0  # a busy machine's scheduling, never a wait of the system's own


def conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def table_locked(url: str) -> Iterator[psycopg.Connection[Any]]:
    """Another session holds ACCESS EXCLUSIVE on evaluations until the block ends (then rolls back)."""
    with psycopg.connect(conninfo(url), connect_timeout=5) as connection:
        connection.execute("LOCK TABLE evaluations IN ACCESS EXCLUSIVE MODE")
        try:
            yield connection
        finally:
            connection.rollback()


def test_the_engine_bounds_statements_and_lock_waits_and_keeps_the_urls_options(
    postgres_databases: Callable[[], str],
) -> None:
    url = make_url(postgres_databases()).update_query_dict({"options": "-c TimeZone=America/Sao_Paulo"})
    engine = make_engine(
        url.render_as_string(hide_password=False), statement_timeout_s=0.6, lock_timeout_s=0.3, keepalive_s=7
    )
    try:
        with engine.connect() as connection:
            settings = {
                name: connection.execute(text(f"SHOW {name}")).scalar_one()
                for name in ("statement_timeout", "lock_timeout", "TimeZone")
            }
            parameters = connection.connection.dbapi_connection.info.get_parameters()  # type: ignore[union-attr]
    finally:
        engine.dispose()
    assert settings == {"statement_timeout": "600ms", "lock_timeout": "300ms", "TimeZone": "America/Sao_Paulo"}
    assert parameters["keepalives"] == "1" and parameters["keepalives_idle"] == "7"
    assert parameters["tcp_user_timeout"] == "28000"


async def test_a_locked_records_table_is_503_within_the_deadline_then_evaluations_succeed_again(
    tmp_path: Path, stub: Any, postgres_databases: Callable[[], str]
) -> None:
    url = postgres_databases()
    settings = make_settings(tmp_path, database_url=url, **TIMEOUTS)
    bound_s = TIMEOUTS["record_commit_timeout_s"] + MARGIN_S
    app = create_app(stub.settings(settings))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=transport, base_url="http://testserver", timeout=30, headers=analyst_headers(app)
        ) as client,
    ):
        assert (await client.post(URL, json=body(name="Antes"))).status_code == 201

        with table_locked(url):
            started = time.monotonic()
            responses = await asyncio.gather(*(client.post(URL, json=body(name=f"Cliente {i}")) for i in range(8)))
            elapsed = time.monotonic() - started
            ready = await client.get("/readyz")

        assert elapsed < bound_s, f"answered after {elapsed:.1f} s, not within {bound_s} s"
        for response in responses:
            assert response.status_code == 503, response.text
            # lock_timeout ended each stuck INSERT: its transaction rolled back, so "not recorded" is true.
            assert response.json()["error"] == "database_unavailable"
            assert int(response.headers["retry-after"]) >= 1
        assert ready.status_code == 503 and ready.json()["checks"]["database"].startswith("unavailable")

        # The lock is gone: evaluations succeed again, with no restart.
        after = await client.post(URL, json=body(name="Depois"))
        assert after.status_code == 201, after.text
        assert (await client.get("/readyz")).status_code == 200

    with psycopg.connect(conninfo(url)) as connection:
        stored = [r[0] for r in connection.execute("SELECT customer_name FROM evaluations ORDER BY created_at")]
    keys = DataKeys.from_file(settings.data_keys_file())  # names are stored encrypted
    names = [keys.decrypt(name) for name in stored]
    assert names == ["Antes", "Depois"]  # none of the 503s left a row behind


# --- migrations, once per rollout --------------------------------------------------------------------


def migrate(url: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "evaluation_api.migrate"],
        cwd=ROOT,
        env=project_env(DATABASE_URL=url, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def waiting_for_the_lock(connection: psycopg.Connection[Any]) -> int:
    row = connection.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database())"
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_two_concurrent_migrations_both_succeed_and_the_schema_is_applied_once(
    postgres_databases: Callable[[], str],
) -> None:
    url = postgres_databases()
    with psycopg.connect(conninfo(url), autocommit=True) as holder:
        # Hold the migrations' lock, so that both runs are surely waiting for it at the same time.
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        runs = [migrate(url), migrate(url)]
        deadline = time.monotonic() + 60
        while waiting_for_the_lock(holder) < 2:
            assert all(run.poll() is None for run in runs), [run.communicate()[0] for run in runs]
            assert time.monotonic() < deadline, "the two runs never both waited for the lock"
            time.sleep(0.05)
        holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
        outputs = [run.communicate(timeout=120)[0] for run in runs]
        assert [run.returncode for run in runs] == [0, 0], outputs
        versions = holder.execute("SELECT version_num FROM alembic_version").fetchall()
        tables = holder.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'evaluations'").fetchone()

    applied = [o for o in outputs if "database schema migrated from an empty database to" in o]
    found_done = [o for o in outputs if "database schema already at head" in o]
    assert len(applied) == 1 and len(found_done) == 1, outputs
    assert len(versions) == 1 and tables == (1,)


def test_a_migration_that_cannot_get_the_lock_in_time_gives_up_and_changes_nothing(
    postgres_databases: Callable[[], str],
) -> None:
    url = postgres_databases()
    with psycopg.connect(conninfo(url), autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        run = migrate(url, MIGRATION_WAIT_S="1")
        output = run.communicate(timeout=120)[0]
        tables = holder.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'alembic_version'").fetchone()
    assert run.returncode == 3, output
    assert "migration not applied: a lock was not granted in time (55P03)" in output
    assert tables == (0,)


def test_a_migration_does_not_wait_long_for_a_lock_another_session_holds(
    postgres_databases: Callable[[], str],
) -> None:
    """DDL waits at most MIGRATION_LOCK_TIMEOUT_S for a lock: a migration must never sit in the lock
    queue, where every insert of the API would then queue behind it."""
    url = postgres_databases()
    engine = make_engine(url)
    try:
        with psycopg.connect(conninfo(url)) as holder:
            # Another transaction creates a table of the same name and stays open: the migration's own
            # CREATE TABLE must wait for it to end.
            holder.execute("CREATE TABLE evaluations (id int)")
            started = time.monotonic()
            with pytest.raises(OperationalError, match="lock timeout"):
                upgrade(engine, lock_timeout_s=0.3)
            assert time.monotonic() - started < 0.3 + MARGIN_S
            holder.rollback()
        assert upgrade(engine, lock_timeout_s=0.3)[0] is None  # nothing had been applied; now it is
    finally:
        engine.dispose()
