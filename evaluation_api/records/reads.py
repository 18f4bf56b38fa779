"""Reading decision records under the per-record rules, each read an audit event in the same transaction.

An analyst (or a calling system) reads what they created; reviewers, auditors and the DPO read every
record (evaluation_api.identity.access.can_read). A record the caller may not read is reported as absent (404,
never 403: its existence is not revealed), and the attempt is recorded as a `denied` event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import Engine, select

from evaluation_api.audit import trail as audit
from evaluation_api.identity.access import READS_ALL, can_read
from evaluation_api.identity.roles import Principal
from evaluation_api.records.table import EvaluationRow


def read_for(
    engine: Engine,
    evaluation_id: str,
    principal: Principal,
    context: audit.Context,
    *,
    action: str = "evaluation.read",
    details: dict[str, Any] | None = None,
) -> EvaluationRow | None:
    """The record if `principal` may read it, else None; the read (or its refusal) is an audit event,
    `action` (a statement's issue is one: evaluation_api/statements/)."""
    with engine.begin() as connection:
        found = connection.execute(select(EvaluationRow).where(EvaluationRow.id == evaluation_id)).first()
        if found is None:
            return None
        row = EvaluationRow(**found._mapping)
        allowed = can_read(principal, row.created_by)
        audit.append(
            connection,
            audit.event(
                context,
                action,
                target_type="evaluation",
                target_id=evaluation_id,
                outcome="success" if allowed else "denied",
                details=details,
            ),
        )
    return row if allowed else None


class ListFilters(BaseModel):
    created_by: str | None = None
    decision: Literal["approved", "review", "denied"] | None = None
    # The keyed hash of the customer id (evaluation_api/privacy/encryption.py): ids are stored encrypted, and
    # the audit event of a list names no customer id.
    customer_id_hash: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def list_for(
    engine: Engine, principal: Principal, context: audit.Context, filters: ListFilters, *, limit: int, offset: int
) -> tuple[list[EvaluationRow], bool]:
    """The caller's own records (all of them for reviewers, auditors and the DPO, with filters), newest
    first; and whether there are more. Listing is an audit event (its filters and how many it showed)."""
    query = select(EvaluationRow).order_by(EvaluationRow.created_at.desc(), EvaluationRow.id.desc())
    created_by = filters.created_by if principal.has(*READS_ALL) else principal.subject
    if created_by is not None:
        query = query.where(EvaluationRow.created_by == created_by)
    if filters.decision is not None:
        query = query.where(EvaluationRow.decision == filters.decision)
    if filters.customer_id_hash is not None:
        query = query.where(EvaluationRow.customer_id_hash == filters.customer_id_hash)
    if filters.since is not None:
        query = query.where(EvaluationRow.created_at >= filters.since)
    if filters.until is not None:
        query = query.where(EvaluationRow.created_at < filters.until)
    with engine.begin() as connection:
        rows = [EvaluationRow(**r._mapping) for r in connection.execute(query.limit(limit + 1).offset(offset))]
        shown = rows[:limit]
        details = {k: str(v) for k, v in filters.model_dump(exclude_none=True).items()}
        audit.append(
            connection,
            audit.event(
                context,
                "evaluation.list",
                target_type="evaluation",
                details={**details, "count": len(shown), "offset": offset},
            ),
        )
    return shown, len(rows) > limit


class ReviewSummary(BaseModel):
    id: str
    status: Literal["open", "closed"]
    final_decision: Literal["approved", "denied"] | None


class EvaluationSummary(BaseModel):
    """One line of a list: enough to recognise the evaluation; the record has the rest."""

    id: str
    name: str | None = Field(description="The customer's name (null once anonymised)")
    customer_id: str | None
    decision: Literal["approved", "review", "denied"]
    segment: dict[str, str | int]
    channel: Literal["api", "legacy"]
    created_by: str | None
    evaluated_at: datetime
    anonymized: bool = False
    review: ReviewSummary | None = Field(None, description="The newest review case: its status and final decision")


class EvaluationPage(BaseModel):
    items: list[EvaluationSummary]
    limit: int
    offset: int
    next_offset: int | None = Field(description="The offset of the next page, null on the last one")
