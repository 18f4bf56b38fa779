"""Idempotency-Key on POST /api/v1/evaluations: a retry returns the first decision, never a second one.

A key is reserved (account, key, digest of the validated body) before the evaluation and completed
with its id after it; the same key and body within WINDOW answer that evaluation; another body is a
409; a key whose evaluation is still running is a 409 with Retry-After. A failed evaluation releases
its key, so that the retry evaluates. Keys are per account: two callers never see each other's.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, Engine, String, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from evaluation_api.database import Base, as_utc

WINDOW = timedelta(hours=24)
# A reservation whose evaluation never completed (its process died) is abandoned after this.
ABANDONED_AFTER = timedelta(seconds=60)
MAX_KEY_LENGTH = 255


class IdempotencyRow(Base):
    __tablename__ = "idempotency_keys"

    account: Mapped[str] = mapped_column(String(128), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    body_digest: Mapped[str] = mapped_column(String(64))
    evaluation_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class Reserved:
    pass


@dataclass(frozen=True)
class Replay:
    evaluation_id: str


@dataclass(frozen=True)
class Mismatch:
    pass


@dataclass(frozen=True)
class InProgress:
    pass


Outcome = Reserved | Replay | Mismatch | InProgress


def body_digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _this(account: str, key: str) -> Any:
    return (IdempotencyRow.account == account) & (IdempotencyRow.key == key)


def reserve(engine: Engine, account: str, key: str, digest: str) -> Outcome:
    for _ in range(3):
        now = datetime.now(UTC)
        try:
            with engine.begin() as connection:
                connection.execute(
                    insert(IdempotencyRow),
                    [{"account": account, "key": key, "body_digest": digest, "evaluation_id": None, "created_at": now}],
                )
            return Reserved()
        except IntegrityError:
            pass
        with engine.begin() as connection:
            row = connection.execute(select(IdempotencyRow).where(_this(account, key))).first()
            if row is None:
                continue  # released meanwhile: try again
            created = as_utc(row.created_at)
            stale = created < now - WINDOW or (row.evaluation_id is None and created < now - ABANDONED_AFTER)
            if stale:
                connection.execute(
                    delete(IdempotencyRow).where(_this(account, key), IdempotencyRow.created_at == row.created_at)
                )
                continue
            if row.body_digest != digest:
                return Mismatch()
            if row.evaluation_id is None:
                return InProgress()
            return Replay(row.evaluation_id)
    return InProgress()


def complete(engine: Engine, account: str, key: str, evaluation_id: str) -> None:
    with engine.begin() as connection:
        connection.execute(update(IdempotencyRow).where(_this(account, key)).values(evaluation_id=evaluation_id))


def release(engine: Engine, account: str, key: str) -> None:
    with engine.begin() as connection:
        connection.execute(delete(IdempotencyRow).where(_this(account, key), IdempotencyRow.evaluation_id.is_(None)))
