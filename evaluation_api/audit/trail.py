"""The audit trail: append-only events (who did what to which record, when, from where).

Written in the same transaction as what they describe (an account change, the read of a record), so
there is never a read without its event. Never updated nor deleted: the migration adds a trigger that
refuses both, and on PostgreSQL revokes the privileges (docs/DEPLOY.md, "Audit trail").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import JSON, BigInteger, Connection, DateTime, Engine, Integer, String, insert, select
from sqlalchemy.orm import Mapped, mapped_column

from evaluation_api.database import Base

Outcome = Literal["success", "failure", "denied"]

# The actions this API writes. The next ones (review steps, data-subject requests) add theirs here.
ACTIONS = (
    "auth.login",
    "evaluation.read",
    "evaluation.list",
    "audit.read",
    "account.create",
    "account.disable",
    "account.enable",
    "account.password_reset",
    "api_key.create",
    "api_key.revoke",
    # Review of automated decisions (evaluation_api/reviews/rules.py) and data-subject requests.
    "review.open",
    "review.request",
    "review.list",
    "review.read",
    "review.decide",
    "information.request",
    "information.answer",
    "data_subject.export",
    "anonymize",
    "portfolio_run.create",
    "portfolio_run.download",
    # A statement of a decision given to the customer (evaluation_api/statements/).
    "statement.issue",
    # Change control (evaluation_api/releases/).
    "policy_version.create",
    "model_version.create",
    "challenger.start",
    "challenger.stop",
    "release.promote",
    "release.rollback",
)


class AuditEventRow(Base):
    __tablename__ = "audit_events"

    # BigInteger on PostgreSQL, INTEGER (the rowid) on SQLite: SQLite autoincrements only an INTEGER key.
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    actor: Mapped[str] = mapped_column(String(128), index=True)
    actor_roles: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(48), index=True)
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(128), index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    request_id: Mapped[str] = mapped_column(String(64))
    client_address: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)


@dataclass(frozen=True)
class Context:
    """Who acts and from where: what every event of one request shares."""

    actor: str
    actor_roles: str
    request_id: str
    client_address: str | None


def event(
    context: Context,
    action: str,
    *,
    target_type: str | None = None,
    target_id: str | None = None,
    outcome: Outcome = "success",
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    assert action in ACTIONS, action
    return {
        "occurred_at": datetime.now(UTC),
        "actor": context.actor,
        "actor_roles": context.actor_roles,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "outcome": outcome,
        "request_id": context.request_id,
        "client_address": context.client_address,
        "details": details,
    }


def append(connection: Connection, *events: dict[str, Any]) -> None:
    """Add events inside the caller's transaction."""
    if events:
        connection.execute(insert(AuditEventRow), list(events))


def record(engine: Engine, *events: dict[str, Any]) -> None:
    """Add events in a transaction of their own (a sign-in)."""
    with engine.begin() as connection:
        append(connection, *events)


def search(
    engine: Engine,
    context: Context,
    *,
    record_id: str | None,
    actor: str | None,
    action: str | None,
    limit: int,
    offset: int,
) -> list[AuditEventRow]:
    """Events, newest first, filtered; reading the trail is itself an event."""
    query = select(AuditEventRow).order_by(AuditEventRow.id.desc()).limit(limit).offset(offset)
    if record_id is not None:
        query = query.where(AuditEventRow.target_id == record_id)
    if actor is not None:
        query = query.where(AuditEventRow.actor == actor)
    if action is not None:
        query = query.where(AuditEventRow.action == action)
    filters = {k: v for k, v in {"record_id": record_id, "actor": actor, "action": action}.items() if v is not None}
    with engine.begin() as connection:
        rows = [AuditEventRow(**row._mapping) for row in connection.execute(query)]
        append(
            connection,
            event(
                context,
                "audit.read",
                target_type="evaluation" if record_id else None,
                target_id=record_id,
                details=filters or None,
            ),
        )
    return rows
