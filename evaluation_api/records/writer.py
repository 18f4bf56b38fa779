"""Decision records: the writer that commits before a response is sent.

Writes go through RecordWriter: one thread that takes every record queued while the previous
commit ran and commits them in one transaction ("group commit"), then wakes each waiting request.
Each evaluation still gets its record committed before its response, but 64 concurrent
evaluations cost a few commits (and fsyncs), not 64. A record waits at most its commit deadline,
and at most `queue_max` records wait (RecordWriter says what each caller is told, and why it is true).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from sqlalchemy import (
    Connection,
    Engine,
    insert,
)
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from evaluation_api.records.table import EvaluationRow

logger = logging.getLogger(__name__)


class RecordNotWritten(Exception):
    """The record was not written and never will be: its transaction rolled back, or it was withdrawn
    from the queue before the writer took it. Nothing was recorded, so nothing was decided."""


class RecordQueueFull(RecordNotWritten):
    """More records wait for the writer than RECORD_QUEUE_MAX: refused at once, before queueing."""


class RecordOutcomeUnknown(Exception):
    """The deadline passed while the record's transaction was in progress. It may still commit or roll
    back (the writer logs which, with the request id); the caller must not be told either."""


QUEUED, TAKEN, WITHDRAWN = "queued", "taken", "withdrawn"


@dataclass(eq=False)
class _Item:
    row: dict[str, Any]
    future: asyncio.Future[None]
    queued_at: float
    state: str = QUEUED
    outcome: BaseException | None = None  # set with `done` under the writer's lock
    done: bool = False
    caller_gone: bool = False  # its caller was answered "outcome unknown"


@dataclass(frozen=True)
class WriterHealth:
    """For /readyz: the writer thread, its queue, the current commit, and the oldest record still
    waiting for its answer (queued, or in the running commit); stalled when that one has waited past
    the commit deadline."""

    alive: bool
    restarts: int
    queue_depth: int
    oldest_waiting_s: float | None
    committing_for_s: float | None
    last_commit_s: float | None
    stalled: bool


# Writes what must exist with a group of new records, in their transaction (review cases).
Companions = Callable[[Connection, Sequence[dict[str, Any]]], None]


class RecordWriter:
    """Commits records in groups on one thread; `await write(row)` returns once its group committed.

    What a caller is told, and why it is always true:
    - returns: its record is committed;
    - RecordQueueFull: RECORD_QUEUE_MAX records already wait; this one was never queued;
    - RecordNotWritten: its group's transaction rolled back (a failing database, statement_timeout or
      lock_timeout), or its deadline passed while it was still queued and it was withdrawn (the
      writer never takes a withdrawn record);
    - RecordOutcomeUnknown: its deadline passed while its group's transaction was running. Where the
      statement timeouts are shorter than the deadline (Settings checks it), a stuck statement ends
      in RecordNotWritten first; this is left for a COMMIT or a connection that hangs past them.

    If the thread dies (a bug: every error of a commit is caught), the next write or readiness check
    starts a new one and counts it in `restarts`; records it had taken end as RecordOutcomeUnknown.

    A lone record (`write(row, lone=True)`: no other evaluation in flight in this process) on a SQLite
    file with synchronous=NORMAL is committed on the caller's thread, the event loop, when the writer is
    idle: handing it to the thread and back was a tenth of a lone evaluation's time
    (docs/ARCHITECTURE.md, "Figures behind choices in the code"). It never waits there: it takes the
    processes' turn without blocking and SQLite's lock with a busy timeout of 0, and if either is held
    it goes to the queue, whose deadline applies. Such a commit writes the WAL without an fsync, and its
    connection never checkpoints (a checkpoint syncs two files): the thread does, every
    INLINE_CHECKPOINT_EVERY inline commits. What it does not bound is a disk that stops taking writes:
    `inline=False` (RECORD_INLINE=false) sends every record through the thread and its deadline.
    """

    MAX_GROUP = 500
    # Under load (the last group held more than one record), a group waits this long after its first
    # record for others to join: every commit costs far more than a row in it, and processes that share
    # a SQLite file take turns for each one. A lone record (one client) never waits.
    GATHER_S = 0.001
    # SQLite's own automatic checkpoint is every 1,000 pages of WAL; a lone record writes about ten.
    INLINE_CHECKPOINT_EVERY = 64

    def __init__(
        self,
        engine: Engine,
        *,
        queue_max: int = 1000,
        commit_timeout_s: float = 2.0,
        companions: Companions | None = None,
        inline: bool = True,
    ) -> None:
        self._engine = engine
        self._companions = companions
        self._queue_max = queue_max
        self._commit_timeout_s = commit_timeout_s
        self._lock = threading.Condition()
        self._pending: deque[_Item] = deque()
        self._closing = False
        self._commit_started: float | None = None
        self._committing_since: float | None = None  # when the oldest record of the running commit was queued
        self._last_commit: float | None = None
        self._last_group = 0
        database = engine.url.database
        on_file = engine.dialect.name == "sqlite" and database not in (None, "", ":memory:")
        self._lock_path = f"{database}.writers.lock" if on_file else None
        self._lock_file: BinaryIO | None = None
        # The lone-record path (see the class's docstring): its own turn file (flock() conflicts between
        # open files, so it takes turns with the thread too) and its own connection, never pooled.
        self._inline = inline and self._lock_path is not None
        self._inline_turn: BinaryIO | None = None
        self._inline_connection: Connection | None = None
        self._inline_commits = 0  # since the thread last checkpointed
        self._checkpoint_due = False
        self.restarts = 0
        self._thread = self._start()

    def _start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="record-writer", daemon=True)
        thread.start()
        return thread

    def ensure_running(self) -> None:
        with self._lock:
            if self._closing or self._thread.is_alive():
                return
            self.restarts += 1
            logger.error("the record writer thread had died; starting another (restart %d)", self.restarts)
            self._commit_started = self._committing_since = None
            self._thread = self._start()

    async def write(self, row: dict[str, Any], *, lone: bool = False) -> None:
        """Return once `row` is committed; raise as the class's docstring says. `lone`: no other
        evaluation is in flight in this process, so committing it here delays nobody."""
        self.ensure_running()
        if lone and self._inline and self._commit_inline(row):
            return
        item = _Item(row, asyncio.get_running_loop().create_future(), time.monotonic())
        item.future.add_done_callback(_consume)  # its outcome is read even if its caller left
        with self._lock:
            if len(self._pending) >= self._queue_max:
                raise RecordQueueFull(f"{len(self._pending)} records already wait for the writer")
            self._pending.append(item)
            self._lock.notify()
        try:
            # Shielded: a client that disconnects does not withdraw its record; it is committed or not
            # as if it had stayed.
            await asyncio.wait_for(asyncio.shield(item.future), self._commit_timeout_s)
        except TimeoutError:
            with self._lock:
                if item.done:  # decided a moment ago; its answer is on its way to the loop
                    outcome = item.outcome
                elif item.state == QUEUED:
                    item.state = WITHDRAWN
                    self._pending.remove(item)
                    outcome = RecordNotWritten("withdrawn from the queue at its deadline")
                else:
                    item.caller_gone = True
                    outcome = RecordOutcomeUnknown("the commit was still running at its deadline")
            if outcome is not None:
                raise outcome from None

    def health(self) -> WriterHealth:
        now = time.monotonic()
        with self._lock:
            depth = len(self._pending)
            waiting = [self._pending[0].queued_at] if self._pending else []
            if self._committing_since is not None:
                waiting.append(self._committing_since)
            oldest = now - min(waiting) if waiting else None
            committing = now - self._commit_started if self._commit_started is not None else None
            last = now - self._last_commit if self._last_commit is not None else None
            alive = self._thread.is_alive()
        stalled = oldest is not None and oldest >= self._commit_timeout_s
        return WriterHealth(alive, self.restarts, depth, oldest, committing, last, stalled)

    def close(self) -> None:
        """Commit what is queued, then stop the thread."""
        with self._lock:
            self._closing = True
            self._lock.notify()
        self._thread.join(timeout=10)
        if self._lock_file is not None and not self._thread.is_alive():
            self._lock_file.close()
        self._drop_inline_connection()
        if self._inline_turn is not None:
            self._inline_turn.close()

    def _run(self) -> None:
        try:
            while self._wait_for_work():
                if self._checkpoint_due:
                    self._checkpoint()
                if not self._pending:
                    continue
                # The turn is taken before the records: while it waits (another process commits),
                # they stay queued, so a caller whose deadline passes withdraws its record for sure.
                with self._turn():
                    group = self._take()
                    if group:
                        self._commit(group)
        except BaseException:
            # Not re-raised: the thread ends either way, and ensure_running() replaces it.
            logger.critical("the record writer thread died", exc_info=True)

    def _wait_for_work(self) -> bool:
        """Wait for a record (False: closing and nothing left). Under load (the last group held more
        than one record), let others join for up to GATHER_S after the first."""
        with self._lock:
            while not self._pending:
                if self._closing:
                    return False
                if self._checkpoint_due:
                    return True
                self._lock.wait(timeout=1.0)
            if self._last_group > 1:
                gather_until = self._pending[0].queued_at + self.GATHER_S
                while (
                    0 < len(self._pending) < self._last_group
                    and not self._closing
                    and (left := gather_until - time.monotonic()) > 0
                ):
                    self._lock.wait(timeout=left)
            return True

    def _take(self) -> list[_Item]:
        """The queued records, up to MAX_GROUP (none if all were withdrawn meanwhile)."""
        with self._lock:
            group: list[_Item] = []
            while self._pending and len(group) < self.MAX_GROUP:
                item = self._pending.popleft()
                item.state = TAKEN
                group.append(item)
            if group:
                self._commit_started = time.monotonic()
                self._committing_since = group[0].queued_at
                self._last_group = len(group)
            return group

    @contextlib.contextmanager
    def _turn(self) -> Iterator[None]:
        """On a SQLite file, this process's turn to write among the API's processes that share it
        (`make run` runs one per core). SQLite's own wait for its lock polls with growing sleeps,
        which showed as the p99 under load; a blocked flock() wakes as soon as the other
        process's commit ends. Other databases order writers themselves."""
        if self._lock_path is None:
            yield
            return
        if self._lock_file is None:
            self._lock_file = open(self._lock_path, "a+b")  # noqa: SIM115 (held for the writer's life)
        fcntl.flock(self._lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)

    def _commit_inline(self, row: dict[str, Any]) -> bool:
        """Commit a lone record here and now: True once committed, False if it must go to the queue
        (the writer is busy, or the turn or SQLite's lock is held: nothing was written). Raises
        RecordNotWritten if the database refused it."""
        with self._lock:
            if self._pending or self._commit_started is not None or self._closing:
                return False
        if self._inline_turn is None:
            self._inline_turn = open(self._lock_path or "", "a+b")  # noqa: SIM115 (held for the writer's life)
        try:
            fcntl.flock(self._inline_turn, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        try:
            try:
                connection = self._inline_connection_now()
            except Exception:  # the queue's path opens its own connection, and reports what fails
                return False
            if connection is None:
                return False
            try:
                with connection.begin():
                    self._insert(connection, [row])
            except OperationalError as exc:
                if getattr(exc.orig, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY:
                    return False  # rolled back: another connection writes, the queue waits for it
                self._drop_inline_connection()
                raise _not_written(exc, [row]) from None
            except Exception as exc:
                self._drop_inline_connection()
                raise _not_written(exc, [row]) from None
        finally:
            fcntl.flock(self._inline_turn, fcntl.LOCK_UN)
        with self._lock:
            self._last_commit = time.monotonic()
            self._last_group = 1
            self._inline_commits += 1
            if self._inline_commits >= self.INLINE_CHECKPOINT_EVERY:
                self._checkpoint_due = True
                self._lock.notify()
        return True

    def _inline_connection_now(self) -> Connection | None:
        """The inline path's connection: SQLite's lock is never waited for and the WAL never
        checkpointed on it. None (and the path off for good) unless synchronous is NORMAL: with FULL,
        every commit waits for an fsync, which must not happen on the event loop."""
        if self._inline_connection is None:
            connection = self._engine.connect()
            if connection.exec_driver_sql("PRAGMA synchronous").scalar() != 1:  # 1: NORMAL
                connection.close()
                self._inline = False
                return None
            connection.exec_driver_sql("PRAGMA busy_timeout=0")
            connection.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
            connection.commit()
            self._inline_connection = connection
        return self._inline_connection

    def _drop_inline_connection(self) -> None:
        # Invalidated, not returned: its pragmas must not reach the pool's other users.
        if self._inline_connection is not None:
            with contextlib.suppress(Exception):
                self._inline_connection.invalidate()
            self._inline_connection = None

    def _checkpoint(self) -> None:
        """Copy the WAL's committed pages into the database file, without waiting for anyone (PASSIVE):
        the inline commits' connection leaves this to the thread."""
        with self._lock:
            self._checkpoint_due = False
            self._inline_commits = 0
        try:
            with self._engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        except Exception as exc:  # the next one will try again; the records are safe in the WAL
            logger.warning("WAL checkpoint failed: %s", type(exc).__name__)

    def _insert(self, connection: Connection, rows: list[dict[str, Any]]) -> None:
        connection.execute(insert(EvaluationRow), rows)
        if self._companions is not None:
            self._companions(connection, rows)

    def _commit(self, group: Sequence[_Item]) -> None:
        error: RecordNotWritten | None = None
        try:
            with self._engine.begin() as connection:
                self._insert(connection, [item.row for item in group])
        except Exception as exc:  # the whole group rolled back: none of them is recorded
            error = _not_written(exc, [item.row for item in group])
        with self._lock:
            self._commit_started = self._committing_since = None
            if error is None:
                self._last_commit = time.monotonic()
            for item in group:
                item.done, item.outcome = True, error
            late = [item.row["request_id"] for item in group if item.caller_gone]
        if late:
            # Those callers were told the outcome was unknown; here it is, for whoever looks them up.
            logger.warning(
                "%d decision record(s) %s after their deadline; their callers were answered 503 record_unconfirmed",
                len(late),
                "committed" if error is None else "rolled back",
                extra={"request_id": ",".join(late)},
            )
        # One wake-up of each event loop for the whole group, not one per record.
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for item in group:
            by_loop.setdefault(item.future.get_loop(), []).append(item.future)
        for loop, futures in by_loop.items():
            # RuntimeError: that event loop has closed, so nobody waits for these answers any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, futures, error)


def _not_written(exc: Exception, rows: Sequence[dict[str, Any]]) -> RecordNotWritten:
    """Log a group's failed transaction (it rolled back: none of its records is written)."""
    logger.error(
        "could not commit %d decision record(s): %s",
        len(rows),
        type(exc).__name__,
        extra={"request_id": ",".join(row["request_id"] for row in rows)},
        exc_info=not isinstance(exc, SQLAlchemyError),
    )
    return RecordNotWritten(type(exc).__name__)


def _resolve(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


def _consume(future: asyncio.Future[None]) -> None:
    """Retrieve the outcome of a future nobody awaits any more (else asyncio logs it as lost)."""
    if not future.cancelled():
        future.exception()
