"""Decision records: the table, the engine, and a writer that commits before a response is sent.

Writes go through RecordWriter: one thread that takes every record queued while the previous
commit ran and commits them in one transaction ("group commit"), then wakes each waiting request.
Each evaluation still gets its record committed before its response, but 64 concurrent
evaluations cost a few commits (and fsyncs), not 64.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Engine,
    Float,
    Integer,
    String,
    Table,
    create_engine,
    event,
    insert,
    select,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped

from contract import FEATURE_NAMES

logger = logging.getLogger(__name__)


class Base(DeclarativeBase):
    pass


class EvaluationRow(Base):
    """One decision, as made. Never updated: a review is a new evaluation.

    The customer's figures are one column each, named as in the contract (contract.FEATURE_NAMES);
    migrations/ creates the same table (tests/evaluation_api/test_records.py compares them)."""

    __table__ = Table(
        "evaluations",
        Base.metadata,
        Column("id", String(36), primary_key=True),
        Column("request_id", String(64), nullable=False, index=True),
        Column("channel", String(16), nullable=False),
        Column("customer_name", String(120), nullable=False),
        Column("customer_id", String(64), nullable=True, index=True),
        *(Column(name, Float, nullable=False) for name in FEATURE_NAMES),
        Column("segment_id", Integer, nullable=False),
        Column("segment_key", String(64), nullable=False),
        Column("distances", JSON, nullable=False),
        Column("decision", String(16), nullable=False),
        Column("reasons", JSON, nullable=False),
        Column("model_name", String(64), nullable=False),
        Column("model_version", String(64), nullable=False, index=True),
        Column("policy_version", String(32), nullable=False),
        Column("evaluated_at", DateTime(timezone=True), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        # Who made it (an account's name, `oidc:<sub>`); none on records made before sign-in existed.
        Column("created_by", String(128), nullable=True, index=True),
    )

    # Typed attributes for the columns the code reads by name; the figures are read with getattr.
    id: Mapped[str]
    request_id: Mapped[str]
    channel: Mapped[str]
    customer_name: Mapped[str]
    customer_id: Mapped[str | None]
    segment_id: Mapped[int]
    segment_key: Mapped[str]
    distances: Mapped[list[float]]
    decision: Mapped[str]
    reasons: Mapped[list[dict[str, str]]]
    model_name: Mapped[str]
    model_version: Mapped[str]
    policy_version: Mapped[str]
    evaluated_at: Mapped[datetime]
    created_at: Mapped[datetime]
    created_by: Mapped[str | None]


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 5})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
            # WAL: readers never block the writer; FULL: a committed decision survives a power cut.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.close()

        return engine
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=2,
        connect_args={"connect_timeout": 2},
    )


class RecordWriter:
    """Commits records in groups on one thread; `await write(row)` returns once its group committed."""

    MAX_GROUP = 500

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._queue: queue.SimpleQueue[tuple[dict[str, Any], asyncio.Future[None]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="record-writer", daemon=True)
        self._thread.start()

    async def write(self, row: dict[str, Any]) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put((row, future))
        # Shielded: a client that disconnects must not leave the caller unsure whether it committed.
        await asyncio.shield(future)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            group = [item]
            while len(group) < self.MAX_GROUP:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._commit(group)
                    return
                group.append(nxt)
            self._commit(group)

    def _commit(self, group: Sequence[tuple[dict[str, Any], asyncio.Future[None]]]) -> None:
        error: BaseException | None = None
        try:
            with self._engine.begin() as connection:
                connection.execute(insert(EvaluationRow), [row for row, _ in group])
        except SQLAlchemyError as exc:  # the whole group rolled back: none of them is recorded
            logger.error(
                "could not commit %d decision record(s): %s",
                len(group),
                type(exc).__name__,
                extra={"request_id": ",".join(row["request_id"] for row, _ in group)},
            )
            error = exc
        for _, future in group:
            loop = future.get_loop()
            if error is None:
                loop.call_soon_threadsafe(_resolve, future, None)
            else:
                loop.call_soon_threadsafe(_resolve, future, error)


def _resolve(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def read_record(engine: Engine, evaluation_id: str) -> EvaluationRow | None:
    with engine.connect() as connection:
        row = connection.execute(select(EvaluationRow).where(EvaluationRow.id == evaluation_id)).first()
    return EvaluationRow(**row._mapping) if row is not None else None


def check_writable(engine: Engine) -> None:
    """Raise if the database cannot take a decision record (for /readyz): insert one, then roll back."""
    now = datetime.now(UTC)
    probe: dict[str, Any] = {
        "id": "readiness-probe",
        "request_id": "-",
        "channel": "api",
        "customer_name": "-",
        "customer_id": None,
        **dict.fromkeys(FEATURE_NAMES, 1.0),
        "segment_id": 0,
        "segment_key": "-",
        "distances": [],
        "decision": "review",
        "reasons": [],
        "model_name": "-",
        "model_version": "-",
        "policy_version": "-",
        "evaluated_at": now,
        "created_at": now,
    }
    with engine.connect() as connection:
        transaction = connection.begin()
        try:
            connection.execute(insert(EvaluationRow), [probe])
        finally:
            transaction.rollback()
