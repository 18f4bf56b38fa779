"""A lone evaluation's record is committed on the event loop (evaluation_api/records/writer.py, RecordWriter):
only when nothing else waits, never waiting for a lock there, never checkpointing there, and with the
same outcomes as the writer thread's."""

from __future__ import annotations

import asyncio
import fcntl
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, event
from sqlalchemy.exc import OperationalError

from evaluation_api.database import make_engine
from evaluation_api.main import create_app
from evaluation_api.migrate import upgrade
from evaluation_api.records.writer import RecordNotWritten, RecordWriter
from tests.evaluation_api.test_resilience import record_count
from tests.evaluation_api.test_stalls import row, stored_ids
from tests.utils.evaluations import ModelServiceStub, body, make_settings
from tests.utils.identity import analyst_headers


@contextmanager
def statements() -> Iterator[list[tuple[str, str]]]:
    """(thread name, statement) of every statement any engine runs while the block lasts."""
    seen: list[tuple[str, str]] = []

    def keep(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append((threading.current_thread().name, statement.lstrip().upper()))

    event.listen(Engine, "before_cursor_execute", keep)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", keep)


def insert_threads(seen: list[tuple[str, str]]) -> list[str]:
    return [thread for thread, statement in seen if statement.startswith("INSERT INTO EVALUATIONS")]


async def test_a_lone_record_is_committed_on_the_callers_thread_and_others_on_the_writers(engine: Engine) -> None:
    here = threading.current_thread().name
    with statements() as seen:
        writer = RecordWriter(engine)
        try:
            await writer.write(row(1), lone=True)
            await writer.write(row(2))
        finally:
            writer.close()
    assert insert_threads(seen) == [here, "record-writer"]
    assert stored_ids(engine) == {row(1)["id"], row(2)["id"]}
    assert writer.health().last_commit_s is not None


async def test_a_lone_record_goes_to_the_queue_while_another_process_holds_the_turn(
    engine: Engine, tmp_path: Path
) -> None:
    with open(tmp_path / "records.db.writers.lock", "a+b") as other, statements() as seen:
        fcntl.flock(other, fcntl.LOCK_EX)
        writer = RecordWriter(engine, commit_timeout_s=0.3)
        try:
            # Not committed on the loop (the turn is taken), so queued, and withdrawn at its deadline.
            with pytest.raises(RecordNotWritten):
                await writer.write(row(1), lone=True)
            waiting = asyncio.create_task(writer.write(row(2), lone=True))
            await asyncio.sleep(0.05)
            assert not waiting.done() and writer.health().queue_depth == 1
            fcntl.flock(other, fcntl.LOCK_UN)
            await waiting
        finally:
            writer.close()
    assert insert_threads(seen) == ["record-writer"]
    assert stored_ids(engine) == {row(2)["id"]}


async def test_a_lone_record_never_waits_for_sqlites_lock_on_the_event_loop(engine: Engine, tmp_path: Path) -> None:
    # Another program writes to the file (a reviewer's decision, the sqlite3 shell): SQLite's lock is held.
    other = sqlite3.connect(tmp_path / "records.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with statements() as seen:
        writer = RecordWriter(engine, commit_timeout_s=1.5)
        try:
            write = asyncio.create_task(writer.write(row(1), lone=True))
            # The loop keeps turning while the record waits: it waits in the writer's queue, not here.
            # Had the attempt on the loop waited out SQLite's busy timeout (0.2 s for this engine), the
            # first sleep alone would have outlasted the window.
            ticks = 0
            started = time.monotonic()
            while time.monotonic() - started < 0.15:
                await asyncio.sleep(0.005)
                ticks += 1
            assert ticks >= 2 and not write.done()
            assert writer._inline_connection is not None
            assert writer._inline_connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 0
            writer._inline_connection.rollback()
            other.rollback()  # the other program is done: the writer's turn comes within its busy timeout
            await write
        finally:
            writer.close()
            other.close()
    # The attempt on the loop was refused at once (and rolled back); the writer thread committed it.
    assert insert_threads(seen)[-1] == "record-writer"
    assert stored_ids(engine) == {row(1)["id"]}


async def test_a_lone_record_the_database_refuses_is_not_written_and_the_next_one_is(engine: Engine) -> None:
    writer = RecordWriter(engine)
    try:
        await writer.write(row(1), lone=True)
        with pytest.raises(RecordNotWritten):
            await writer.write(row(1), lone=True)  # the same primary key
        await writer.write(row(2), lone=True)
    finally:
        writer.close()
    assert stored_ids(engine) == {row(1)["id"], row(2)["id"]}


async def test_the_writer_thread_checkpoints_what_the_inline_commits_leave_in_the_wal(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(RecordWriter, "INLINE_CHECKPOINT_EVERY", 3)
    here = threading.current_thread().name
    with statements() as seen:
        writer = RecordWriter(engine)
        try:
            for n in range(3):
                await writer.write(row(n), lone=True)
            async with asyncio.timeout(10):
                while not any("WAL_CHECKPOINT" in statement for _, statement in seen):
                    await asyncio.sleep(0.01)
        finally:
            writer.close()
    assert insert_threads(seen) == [here] * 3
    assert [thread for thread, statement in seen if "WAL_CHECKPOINT" in statement] == ["record-writer"]
    # The loop's own connection never checkpoints (a checkpoint syncs two files): SQLite's automatic
    # checkpoint is off there.
    assert ("PRAGMA WAL_AUTOCHECKPOINT=0") in {statement for thread, statement in seen if thread == here}


async def test_if_the_inline_connection_cannot_be_opened_the_record_goes_through_the_thread(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def cannot_open(self: RecordWriter) -> None:
        raise OperationalError("PRAGMA synchronous", {}, sqlite3.OperationalError("unable to open database file"))

    monkeypatch.setattr(RecordWriter, "_inline_connection_now", cannot_open)
    with statements() as seen:
        writer = RecordWriter(engine)
        try:
            await writer.write(row(1), lone=True)
        finally:
            writer.close()
    assert insert_threads(seen) == ["record-writer"]
    assert stored_ids(engine) == {row(1)["id"]}


async def test_with_synchronous_full_every_record_goes_through_the_thread(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'full.db'}", sqlite_synchronous="FULL")
    upgrade(engine)
    with statements() as seen:
        writer = RecordWriter(engine)
        try:
            await writer.write(row(1), lone=True)  # with FULL a commit waits for an fsync: not on the loop
            await writer.write(row(2), lone=True)
        finally:
            writer.close()
    assert insert_threads(seen) == ["record-writer", "record-writer"]
    assert stored_ids(engine) == {row(1)["id"], row(2)["id"]}
    engine.dispose()


async def test_only_an_evaluation_alone_in_its_process_is_committed_on_the_event_loop(tmp_path: Path) -> None:
    here = threading.current_thread().name
    with ModelServiceStub(delay_s=0.05) as stub, statements() as seen:  # both evaluations in flight together
        app = create_app(stub.settings(make_settings(tmp_path)))
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=analyst_headers(app)
            ) as client,
        ):
            together = await asyncio.gather(*(client.post("/api/v1/evaluations", json=body()) for _ in range(2)))
            alone = await client.post("/api/v1/evaluations", json=body())
    assert [r.status_code for r in [*together, alone]] == [201, 201, 201]
    # The two together went through the writer thread (in one group or two, as the thread took them),
    # the lone one did not.
    threads = insert_threads(seen)
    assert set(threads[:-1]) == {"record-writer"} and threads[-1] == here


def test_with_the_database_locked_by_another_program_a_lone_evaluation_is_a_503_then_recovers(
    start_app: Callable[..., Any], db_path: Path
) -> None:
    timeouts = {"database_lock_timeout_s": 0.1, "database_statement_timeout_s": 0.2, "record_commit_timeout_s": 0.5}
    with start_app(**timeouts) as client:
        assert client.post("/api/v1/evaluations", json=body()).status_code == 201
        other = sqlite3.connect(db_path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # the sqlite3 shell, a backup tool: SQLite's lock is held
            # Not waited for on the event loop: queued, then refused at the busy timeout. Nothing recorded.
            response = client.post("/api/v1/evaluations", json=body())
            assert response.status_code == 503 and response.json()["error"] == "database_unavailable"
            assert int(response.headers["retry-after"]) >= 1
            assert client.get("/healthz").status_code == 200
        finally:
            other.rollback()
            other.close()
        assert client.post("/api/v1/evaluations", json=body()).status_code == 201
    assert record_count(db_path) == 2
