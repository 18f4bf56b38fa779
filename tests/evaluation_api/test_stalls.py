"""A database that stalls: the record's commit has a deadline, the writer's queue is bounded, /readyz
reports the writer's health, a writer thread that dies is replaced, and no caller is ever told "not
recorded" about a record that then commits.

The stall is real where it can be (tests/evaluation_api/test_postgres_stalls.py locks the table in
PostgreSQL); here the writer's INSERT waits on a gate (a SQLAlchemy event on the writer's thread),
which is how a commit that no database timeout ends (a hung connection) looks from the API."""

from __future__ import annotations

import asyncio
import fcntl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import Engine, event, select

from evaluation_api.main import create_app
from evaluation_api.records.table import EvaluationRow
from evaluation_api.records.writer import RecordNotWritten, RecordOutcomeUnknown, RecordQueueFull, RecordWriter
from tests.evaluation_api.conftest import app_of
from tests.evaluation_api.test_resilience import record_count
from tests.utils.evaluations import body, make_settings, until
from tests.utils.identity import analyst_headers

URL = "/api/v1/evaluations"
# Short, and in the order Settings requires: lock <= statement < commit. Through the writer thread
# (RECORD_INLINE=false): the gate below stops that thread's INSERTs, and a lone evaluation's record
# would otherwise be committed on the event loop (tests/evaluation_api/test_inline_records.py).
FAST = {
    "database_lock_timeout_s": 0.1,
    "database_statement_timeout_s": 0.2,
    "record_commit_timeout_s": 0.5,
    "record_inline": False,
}


@contextmanager
def writer_gate() -> Iterator[threading.Event]:
    """The record writer's INSERTs wait until the yielded event is set (at the latest when the block ends).

    Open it before the app or the writer and close it after them: SQLAlchemy's listeners must not be
    removed while another thread runs them."""
    gate = threading.Event()

    def wait(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if threading.current_thread().name == "record-writer" and statement.lstrip().upper().startswith("INSERT"):
            gate.wait(timeout=30)

    event.listen(Engine, "before_cursor_execute", wait)
    try:
        yield gate
    finally:
        gate.set()
        event.remove(Engine, "before_cursor_execute", wait)


def row(n: int) -> dict[str, Any]:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return {
        "id": f"00000000-0000-4000-8000-{n:012d}",
        "request_id": f"stall-{n}",
        "channel": "api",
        "customer_name": f"Cliente {n}",
        "customer_id": None,
        "balance": 1.0,
        "purchases": 1.0,
        "cash_advance": 1.0,
        "credit_limit": 1.0,
        "payments": 1.0,
        "segment_id": 0,
        "segment_key": "least_active",
        "distances": [1.0],
        "decision": "denied",
        "reasons": [],
        "model_name": "m",
        "model_version": "v",
        "policy_version": "p",
        "evaluated_at": now,
        "created_at": now,
    }


def stored_ids(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return set(connection.execute(select(EvaluationRow.id)).scalars())


async def until_committing(writer: RecordWriter) -> None:
    async with asyncio.timeout(10):
        while writer.health().committing_for_s is None:
            await asyncio.sleep(0.01)


# --- the writer itself -------------------------------------------------------------------------------


async def test_past_the_queue_bound_a_record_is_refused_at_once(engine: Engine) -> None:
    with writer_gate() as gate:
        writer = RecordWriter(engine, queue_max=1, commit_timeout_s=10)
        try:
            first = asyncio.create_task(writer.write(row(1)))
            await until_committing(writer)  # taken by the writer, stuck in its INSERT
            second = asyncio.create_task(writer.write(row(2)))
            await asyncio.sleep(0)
            assert writer.health().queue_depth == 1
            with pytest.raises(RecordQueueFull):
                await writer.write(row(3))
            gate.set()
            await asyncio.gather(first, second)
        finally:
            writer.close()
    assert stored_ids(engine) == {row(1)["id"], row(2)["id"]}


async def test_at_the_deadline_a_queued_record_is_withdrawn_and_a_committing_one_is_unknown(engine: Engine) -> None:
    with writer_gate() as gate, log_records_of("evaluation_api.records.writer") as lines:
        writer = RecordWriter(engine, queue_max=10, commit_timeout_s=0.3)
        try:
            committing = asyncio.create_task(writer.write(row(1)))
            await until_committing(writer)
            queued = asyncio.create_task(writer.write(row(2)))
            outcomes = await asyncio.gather(committing, queued, return_exceptions=True)
            assert isinstance(outcomes[0], RecordOutcomeUnknown)
            assert type(outcomes[1]) is RecordNotWritten
            assert writer.health().queue_depth == 0  # withdrawn: the writer will never take it
            gate.set()
            async with asyncio.timeout(10):
                while writer.health().last_commit_s is None:
                    await asyncio.sleep(0.01)
        finally:
            writer.close()
    # The one told "not recorded" is not; the one told "unknown" committed, and the log says so.
    assert stored_ids(engine) == {row(1)["id"]}
    late = [line for line in lines if "after their deadline" in line.getMessage()]
    assert late and "committed" in late[0].getMessage() and late[0].request_id == "stall-1"  # type: ignore[attr-defined]


async def test_a_database_error_is_not_written_for_the_whole_group(engine: Engine) -> None:
    writer = RecordWriter(engine, queue_max=10, commit_timeout_s=5)
    try:
        await writer.write(row(1))
        with pytest.raises(RecordNotWritten):
            await writer.write(row(1))  # the same primary key: the database refuses it
    finally:
        writer.close()
    assert stored_ids(engine) == {row(1)["id"]}


async def test_processes_sharing_a_sqlite_file_take_turns_and_a_record_waiting_for_its_turn_is_withdrawn(
    engine: Engine, tmp_path: Path
) -> None:
    # Another process's writer holds the turn (`make run` runs one API process per core on one file).
    with open(tmp_path / "records.db.writers.lock", "a+b") as other:
        fcntl.flock(other, fcntl.LOCK_EX)
        writer = RecordWriter(engine, queue_max=10, commit_timeout_s=0.3)
        try:
            # Still queued when its deadline passes: withdrawn, so surely not written.
            with pytest.raises(RecordNotWritten):
                await writer.write(row(1))
            waiting = asyncio.create_task(writer.write(row(2)))
            await asyncio.sleep(0.1)
            assert not waiting.done() and writer.health().queue_depth == 1
            fcntl.flock(other, fcntl.LOCK_UN)  # the other process's commit ends: this one goes at once
            await waiting
        finally:
            writer.close()
    assert stored_ids(engine) == {row(2)["id"]}


@contextmanager
def log_records_of(name: str) -> Iterator[list[Any]]:
    import logging

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level=logging.DEBUG)
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


# --- through the API ---------------------------------------------------------------------------------


def test_a_stalled_commit_is_a_503_that_says_the_outcome_is_unknown_and_readyz_reports_it(
    start_app: Callable[..., Any], db_path: Path
) -> None:
    with writer_gate() as gate, start_app(**FAST) as client:
        response = client.post(URL, json=body(), headers={"X-Request-ID": "stalled-1"})
        assert response.status_code == 503, response.text
        answer = response.json()
        assert answer["error"] == "record_unconfirmed"
        assert "pode ter sido registrada" in answer["message"]
        assert int(response.headers["retry-after"]) >= 1

        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["record_writer"] == "stalled"
        assert ready.json()["checks"]["database"] == "ok"  # the database itself takes writes
        assert ready.json()["record_writer"]["oldest_waiting_s"] >= FAST["record_commit_timeout_s"]
        assert ready.json()["record_writer"]["committing_for_s"] > 0

        gate.set()
        until(lambda: client.get("/readyz").status_code == 200, what="the writer to recover")
        # The caller was not told "not recorded": it was recorded, under the id the 503 named.
        record = client.get(f"{URL}/{answer['id']}")
        assert record.status_code == 200 and record.json()["request_id"] == "stalled-1"
        assert client.post(URL, json=body()).status_code == 201
        metrics = client.get("/metrics").text
    assert 'evaluation_failures_total{error="record_unconfirmed"} 1.0' in metrics
    assert record_count(db_path) == 2


async def test_past_the_queue_bound_evaluations_are_503_with_retry_after(tmp_path: Path, stub: Any) -> None:
    settings = make_settings(tmp_path, record_queue_max=2, record_inline=False)
    app = create_app(stub.settings(settings))
    transport = httpx.ASGITransport(app=app)
    with writer_gate() as gate:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=transport, base_url="http://testserver", headers=analyst_headers(app)
            ) as client,
        ):
            first = asyncio.create_task(client.post(URL, json=body(name="Primeira")))
            await until_committing(app.state.record_writer)
            # Two fit in the queue; the other four are refused at once, while the writer is still stuck.
            tasks = [asyncio.create_task(client.post(URL, json=body(name=f"Cliente {i}"))) for i in range(6)]
            async with asyncio.timeout(10):
                while sum(t.done() for t in tasks) < 4:
                    await asyncio.sleep(0.01)
            assert app.state.record_writer.health().queue_depth == 2
            gate.set()
            responses = await asyncio.gather(*tasks)
            assert (await first).status_code == 201
    refused = [r for r in responses if r.status_code == 503]
    assert len(refused) == 4 and sorted(r.status_code for r in responses) == [201, 201, 503, 503, 503, 503]
    for response in refused:
        assert response.json()["error"] == "database_busy"
        assert set(response.json()) == {"error", "message"}
        assert int(response.headers["retry-after"]) >= 1
    assert record_count(tmp_path / "evaluations.db") == 3


class _Die(BaseException):
    """Something no commit's error handling catches (a bug, an interpreter error)."""


def test_a_writer_thread_that_dies_is_replaced(start_app: Callable[..., Any], db_path: Path) -> None:
    with start_app(**FAST) as client:
        writer: RecordWriter = app_of(client).state.record_writer
        original = writer._commit

        def die(group: Any) -> None:
            writer._commit = original  # type: ignore[method-assign]
            raise _Die

        writer._commit = die  # type: ignore[method-assign]
        response = client.post(URL, json=body())
        # It died holding the record: whether that commit happened is not known, and the 503 says so.
        assert response.status_code == 503 and response.json()["error"] == "record_unconfirmed"
        assert not writer.health().alive

        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["record_writer"]["restarts"] == 1
        assert client.post(URL, json=body()).status_code == 201
    assert record_count(db_path) == 1


# --- settings ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "timeouts",
    [
        {"database_statement_timeout_s": 2.0, "record_commit_timeout_s": 2.0},
        {"database_lock_timeout_s": 1.5, "database_statement_timeout_s": 1.0},
    ],
)
def test_a_statement_must_time_out_before_its_caller_stops_waiting(tmp_path: Path, timeouts: dict[str, float]) -> None:
    with pytest.raises(ValidationError, match="DATABASE_LOCK_TIMEOUT_S <= DATABASE_STATEMENT_TIMEOUT_S"):
        make_settings(tmp_path, **timeouts)
