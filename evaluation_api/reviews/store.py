"""Review cases in the database: the table, and the steps of evaluation_api/reviews/rules.py applied to it.

A case's history (why it was opened, the justification) is free text that may name the customer, so
it is stored encrypted, as one Fernet token (evaluation_api/privacy/encryption.py). At most one case per
evaluation and kind (a review, an information request) is open at a time: a partial unique index says
so to the database, so that two requests at once cannot both open one. Every case has a due date
(evaluation_api/reviews/rules.py), and the queue is sorted by it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, DateTime, Engine, ForeignKey, Index, String, Text, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from evaluation_api.audit import trail as audit
from evaluation_api.database import Base, as_utc
from evaluation_api.privacy.encryption import DataKeys
from evaluation_api.records.table import EvaluationRow
from evaluation_api.reviews import rules as reviews

SYSTEM_ACTOR = "sistema"
SYSTEM_CONTEXT_ROLES = "system"


class ReviewCaseRow(Base):
    __tablename__ = "review_cases"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    evaluation_id: Mapped[str] = mapped_column(String(36), ForeignKey("evaluations.id"), index=True)
    status: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(16), server_default="review")
    trigger: Mapped[str] = mapped_column(String(16))
    opened_by: Mapped[str] = mapped_column(String(120))
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    final_decision: Mapped[str | None] = mapped_column(String(16))
    reviewer: Mapped[str | None] = mapped_column(String(120))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    history: Mapped[str] = mapped_column(Text)  # encrypted JSON list of reviews.HistoryEntry

    __table_args__ = (
        Index(
            "uq_review_cases_one_open_per_evaluation",
            "evaluation_id",
            "kind",
            unique=True,
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
    )


def _to_row(case: reviews.Case, keys: DataKeys) -> dict[str, Any]:
    return {
        "id": case.id,
        "evaluation_id": case.evaluation_id,
        "status": case.status,
        "kind": case.kind,
        "trigger": case.trigger,
        "opened_by": case.opened_by,
        "opened_at": case.opened_at,
        "due_at": case.due_at,
        "final_decision": case.final_decision,
        "reviewer": case.reviewer,
        "decided_at": case.decided_at,
        "history": keys.encrypt_json([entry.to_json() for entry in case.history]),
    }


def to_case(row: Any, keys: DataKeys) -> reviews.Case:
    return reviews.Case(
        id=row.id,
        evaluation_id=row.evaluation_id,
        status=row.status,
        trigger=row.trigger,
        opened_by=row.opened_by,
        opened_at=as_utc(row.opened_at),
        history=tuple(reviews.HistoryEntry.from_json(e) for e in keys.decrypt_json(row.history)),
        due_at=as_utc(row.due_at),
        kind=row.kind,
        final_decision=row.final_decision,
        reviewer=row.reviewer,
        decided_at=as_utc(row.decided_at) if row.decided_at is not None else None,
    )


def automatic_cases(keys: DataKeys, due_in_days: int) -> Any:
    """The RecordWriter companion that opens a case for every `review` decision, in the records'
    transaction, due in `due_in_days` (REVIEW_DUE_DAYS)."""

    def companion(connection: Connection, rows: Sequence[dict[str, Any]]) -> None:
        cases = [
            _to_row(
                reviews.open_case(
                    evaluation_id=row["id"],
                    trigger="automatic",
                    actor=SYSTEM_ACTOR,
                    reason=reviews.AUTOMATIC_REASON,
                    now=row["created_at"],
                    due_in_days=due_in_days,
                ),
                keys,
            )
            for row in rows
            if row["decision"] == "review"
        ]
        if cases:
            connection.execute(insert(ReviewCaseRow), cases)
            request_ids = {row["id"]: row["request_id"] for row in rows}
            audit.append(
                connection,
                *(
                    audit.event(
                        audit.Context(SYSTEM_ACTOR, SYSTEM_CONTEXT_ROLES, request_ids[c["evaluation_id"]], None),
                        "review.open",
                        target_type="evaluation",
                        target_id=c["evaluation_id"],
                        details={"case_id": c["id"], "trigger": "automatic"},
                    )
                    for c in cases
                ),
            )

    return companion


def open_requested(
    engine: Engine,
    keys: DataKeys,
    context: audit.Context,
    *,
    evaluation_id: str,
    reason: str,
    now: datetime,
    due_in_days: int,
    kind: reviews.Kind = "review",
) -> reviews.Case:
    """Open a case on request (its audit event in the same transaction). CaseAlreadyOpen if the
    evaluation has an open case of that kind."""
    case = reviews.open_case(
        evaluation_id=evaluation_id,
        trigger="requested",
        actor=context.actor,
        reason=reason,
        now=now,
        due_in_days=due_in_days,
        kind=kind,
    )
    try:
        with engine.begin() as connection:
            connection.execute(insert(ReviewCaseRow), [_to_row(case, keys)])
            audit.append(
                connection,
                audit.event(
                    context,
                    "review.request" if kind == "review" else "information.request",
                    target_type="evaluation",
                    target_id=evaluation_id,
                    details={"case_id": case.id, "trigger": "requested", "due_at": case.due_at.isoformat()},
                ),
            )
    except IntegrityError:
        raise reviews.CaseAlreadyOpen(
            "Esta avaliação já tem um caso de revisão aberto; acompanhe-o na fila de revisão."
            if kind == "review"
            else "Esta avaliação já tem um pedido de informação aberto; acompanhe-o na fila de revisão."
        ) from None
    return case


@dataclass(frozen=True)
class Page:
    items: list[reviews.Case]
    total: int


def list_cases(engine: Engine, keys: DataKeys, *, status: str | None, limit: int, offset: int) -> Page:
    """Cases, the soonest due first (the queue's order)."""
    query = select(ReviewCaseRow)
    count = select(func.count()).select_from(ReviewCaseRow)
    if status is not None:
        query = query.where(ReviewCaseRow.status == status)
        count = count.where(ReviewCaseRow.status == status)
    query = query.order_by(ReviewCaseRow.due_at, ReviewCaseRow.id).limit(limit).offset(offset)
    with engine.connect() as connection:
        rows = connection.execute(query).all()
        total = connection.execute(count).scalar_one()
    return Page(items=[to_case(row, keys) for row in rows], total=int(total))


def cases_of(connection: Connection, keys: DataKeys, evaluation_ids: Sequence[str]) -> dict[str, list[reviews.Case]]:
    """Every case of these evaluations, oldest first, by evaluation id."""
    out: dict[str, list[reviews.Case]] = {i: [] for i in evaluation_ids}
    if not evaluation_ids:
        return out
    query = (
        select(ReviewCaseRow)
        .where(ReviewCaseRow.evaluation_id.in_(list(evaluation_ids)))
        .order_by(ReviewCaseRow.opened_at, ReviewCaseRow.id)
    )
    for row in connection.execute(query):
        out[row.evaluation_id].append(to_case(row, keys))
    return out


def open_counts(engine: Engine, now: datetime) -> list[tuple[str, int]]:
    """(kind, days left) of every open case: what /metrics counts (evaluation_api/reviews/clock.py)."""
    query = select(ReviewCaseRow.kind, ReviewCaseRow.due_at).where(ReviewCaseRow.status == "open")
    with engine.connect() as connection:
        return [(kind, reviews.days_left(as_utc(due_at), now)) for kind, due_at in connection.execute(query)]


def record_answer(
    engine: Engine, keys: DataKeys, context: audit.Context, *, case_id: str, text: str, now: datetime
) -> reviews.Case | None:
    """Close an information request with its answer, by reviews.answer's rules. None if no such case."""
    return _close(
        engine,
        keys,
        context,
        case_id,
        lambda case, _creator: reviews.answer(case, actor=context.actor, text=text, now=now),
        "information.answer",
        {},
    )


def record_decision(
    engine: Engine,
    keys: DataKeys,
    context: audit.Context,
    *,
    case_id: str,
    decision: reviews.FinalDecision,
    justification: str,
    now: datetime,
) -> reviews.Case | None:
    """Close the case with the reviewer's (context.actor's) decision, by reviews.decide's rules, the
    four eyes against the evaluation's creator. None if there is no such case."""
    return _close(
        engine,
        keys,
        context,
        case_id,
        lambda case, creator: reviews.decide(
            case,
            reviewer=context.actor,
            evaluation_creator=creator,
            decision=decision,
            justification=justification,
            now=now,
        ),
        "review.decide",
        {"final_decision": decision},
    )


def _close(
    engine: Engine,
    keys: DataKeys,
    context: audit.Context,
    case_id: str,
    step: Callable[[reviews.Case, str | None], reviews.Case],
    action: str,
    details: dict[str, Any],
) -> reviews.Case | None:
    """Apply a closing step to the case, with its audit event, in one transaction. The update only
    applies to a case still open: of two reviewers closing it at once, one wins, the other gets CaseClosed."""
    with engine.begin() as connection:
        row = connection.execute(select(ReviewCaseRow).where(ReviewCaseRow.id == case_id)).first()
        if row is None:
            return None
        creator = connection.execute(
            select(EvaluationRow.created_by).where(EvaluationRow.id == row.evaluation_id)
        ).scalar_one_or_none()
        closed = step(to_case(row, keys), creator)
        values = _to_row(closed, keys)
        result = connection.execute(
            update(ReviewCaseRow)
            .where(ReviewCaseRow.id == case_id, ReviewCaseRow.status == "open")
            .values(
                status=values["status"],
                final_decision=values["final_decision"],
                reviewer=values["reviewer"],
                decided_at=values["decided_at"],
                history=values["history"],
            )
        )
        if result.rowcount != 1:
            raise reviews.CaseClosed("Este caso acabou de ser decidido por outra pessoa.")
        audit.append(
            connection,
            audit.event(
                context,
                action,
                target_type="evaluation",
                target_id=closed.evaluation_id,
                details={"case_id": closed.id, **details},
            ),
        )
    return closed
