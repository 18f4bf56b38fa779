"""A stored decision as the API shows it: personal data decrypted (or marked anonymised) and its review."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, select

from contract import FEATURE_NAMES, SEGMENTS_BY_KEY
from decisioning.explanation import describe
from evaluation_api.database import as_utc
from evaluation_api.evaluations.schemas import (
    EvaluationRecord,
    RecordInput,
    ReviewCaseBase,
    ReviewHistoryEntry,
    ReviewPublic,
)
from evaluation_api.privacy.encryption import DataKeys
from evaluation_api.records.table import EvaluationRow
from evaluation_api.reviews import rules as reviews
from evaluation_api.reviews import store as review_store


def case_fields(case: reviews.Case) -> dict[str, Any]:
    """The fields every view of a review case shows (ReviewCaseBase), from the stored case."""
    return {name: getattr(case, name) for name in ReviewCaseBase.model_fields}


def review_public(case: reviews.Case) -> ReviewPublic:
    return ReviewPublic(
        **case_fields(case),
        final_decision=case.final_decision,
        reviewer=case.reviewer,
        justification=case.justification,
        decided_at=case.decided_at,
        history=[
            ReviewHistoryEntry(at=e.at, actor=e.actor, action=e.action, note=e.note, decision=e.decision)
            for e in case.history
        ],
    )


def record_public(row: EvaluationRow, keys: DataKeys, cases: Sequence[reviews.Case] = ()) -> EvaluationRecord:
    segment = SEGMENTS_BY_KEY.get(row.segment_key)
    figures = {name: getattr(row, name) for name in FEATURE_NAMES}
    # Validated from the stored values, except the input: stored as it was accepted, it is not
    # checked again against today's rules (and an anonymised one has no name).
    return EvaluationRecord.model_validate(
        {
            "id": row.id,
            "decision": row.decision,
            "segment": {
                "id": row.segment_id,
                "key": row.segment_key,
                "description": segment.description if segment else "",
            },
            "reasons": row.reasons,
            "explanation": describe(row.explanation, figures) if row.explanation is not None else None,
            "model": {"name": row.model_name, "version": row.model_version},
            "policy_version": row.policy_version,
            "evaluated_at": as_utc(row.evaluated_at),
            "request_id": row.request_id,
            "input": RecordInput.model_construct(
                name=keys.decrypt(row.customer_name) if row.customer_name is not None else None,
                customer_id=keys.decrypt(row.customer_id) if row.customer_id is not None else None,
                **{name: getattr(row, name) for name in FEATURE_NAMES},
            ),
            "distances": row.distances,
            "channel": row.channel,
            "created_at": as_utc(row.created_at),
            "created_by": row.created_by,
            "anonymized": row.anonymized_at is not None,
            "anonymized_at": as_utc(row.anonymized_at) if row.anonymized_at is not None else None,
            "review": review_public(cases[-1]) if cases else None,
        }
    )


def read_records_in(connection: Connection, keys: DataKeys, evaluation_ids: Sequence[str]) -> list[EvaluationRecord]:
    """These records (those that exist), with their newest review case, in the order asked."""
    rows = {
        row.id: EvaluationRow(**row._mapping)
        for row in connection.execute(select(EvaluationRow).where(EvaluationRow.id.in_(list(evaluation_ids))))
    }
    cases = review_store.cases_of(connection, keys, list(rows))
    return [record_public(rows[i], keys, cases[i]) for i in evaluation_ids if i in rows]


def read_records(engine: Engine, keys: DataKeys, evaluation_ids: Sequence[str]) -> list[EvaluationRecord]:
    with engine.connect() as connection:
        return read_records_in(connection, keys, evaluation_ids)


def record_with_reviews(engine: Engine, keys: DataKeys, row: EvaluationRow) -> EvaluationRecord:
    """A record already read (and its read audited), with its review cases."""
    with engine.connect() as connection:
        cases = review_store.cases_of(connection, keys, [row.id])
    return record_public(row, keys, cases[row.id])


def newest_reviews(engine: Engine, keys: DataKeys, evaluation_ids: Sequence[str]) -> dict[str, reviews.Case]:
    """The newest review case of each of these evaluations that has one."""
    with engine.connect() as connection:
        cases = review_store.cases_of(connection, keys, evaluation_ids)
    return {i: found[-1] for i, found in cases.items() if found}
