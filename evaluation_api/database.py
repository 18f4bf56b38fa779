"""The database: the declarative base every table joins, and the engine for DATABASE_URL (SQLite or PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


def make_engine(
    url: str,
    *,
    pool_size: int = 5,
    statement_timeout_s: float | None = None,
    lock_timeout_s: float | None = None,
    keepalive_s: int | None = None,
    sqlite_synchronous: str = "NORMAL",
) -> Engine:
    """The engine for DATABASE_URL. The timeouts bound every statement of its sessions (None: the
    database's defaults, for tools and tests); `keepalive_s` turns on TCP keepalives (PostgreSQL)."""
    if url.startswith("sqlite:///"):
        if sqlite_synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"sqlite_synchronous must be NORMAL or FULL, not {sqlite_synchronous!r}")
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        # SQLite has one lock, the database's, and cannot interrupt a statement that holds it: its busy
        # timeout (the wait for that lock) is the statement's bound. Other connections of this process
        # (audit events, accounts) take the same lock, so the lock timeout alone would be too short.
        busy_s = statement_timeout_s if statement_timeout_s is not None else 5.0
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": busy_s}, json_serializer=_json_text
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
            # WAL: readers never block the writer. synchronous (Settings.sqlite_synchronous): NORMAL, a
            # committed decision survives a crash of the process but the last commits before a power
            # cut may be lost; FULL, an fsync per commit, survives a power cut too.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={sqlite_synchronous}")
            # What is deleted or overwritten is zeroed, not left in free pages (anonymisation, LGPD art. 18).
            cursor.execute("PRAGMA secure_delete=ON")
            cursor.close()

        return engine
    connect_args: dict[str, Any] = {"connect_timeout": 2}
    # Server-side bounds, set at connection start (libpq `options`), kept beside any the URL carries
    # (connect_args would replace the URL's `options`, not add to it).
    in_url = make_url(url).query.get("options")
    options = [in_url] if isinstance(in_url, str) and in_url else []
    if statement_timeout_s is not None:
        options.append(f"-c statement_timeout={round(statement_timeout_s * 1000)}")
    if lock_timeout_s is not None:
        options.append(f"-c lock_timeout={round(lock_timeout_s * 1000)}")
    if options:
        connect_args["options"] = " ".join(options)
    if keepalive_s is not None:
        # Probe an idle connection after keepalive_s, then every keepalive_s, 3 times; and give up on
        # sent data unacknowledged for as long (tcp_user_timeout, ms): a dead peer fails the statement.
        connect_args |= {
            "keepalives": 1,
            "keepalives_idle": keepalive_s,
            "keepalives_interval": keepalive_s,
            "keepalives_count": 3,
            "tcp_user_timeout": keepalive_s * 4 * 1000,
        }
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=2,
        connect_args=connect_args,
        json_serializer=_json_text,
    )


def _json_text(value: Any) -> str:
    """The JSON columns' serializer: orjson, several times faster than json.dumps on every record's
    reasons, distances and explanation (the same JSON, without the spaces; the values are finite, as validated)."""
    return orjson.dumps(value).decode()


@overload
def as_utc(moment: datetime) -> datetime: ...
@overload
def as_utc(moment: None) -> None: ...
def as_utc(moment: datetime | None) -> datetime | None:
    """A timestamp read back from the database, in UTC: SQLite keeps no time zone, and every timestamp
    this system writes is UTC."""
    if moment is None:
        return None
    return moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
