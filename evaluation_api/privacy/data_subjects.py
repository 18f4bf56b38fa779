"""Data-subject rights (LGPD art. 18): what is stored about a customer, and its anonymisation.

A customer is found by the keyed hash of their customer id (evaluation_api/privacy/encryption.py), never by
decrypting every record. Anonymising erases the name and the customer id (its hash too) from every
record; the figures, decisions, reasons, versions and review cases stay, as the decision's legal
record and for statistics, and the record says it was anonymised. Each step is an audit event per
record, written in the step's transaction; events name the records, never the customer id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import Connection, Engine, select, update

from evaluation_api.audit import trail as audit
from evaluation_api.evaluations.schemas import EvaluationRecord, ReviewPublic
from evaluation_api.privacy.encryption import DataKeys
from evaluation_api.records.table import EvaluationRow
from evaluation_api.records.view import read_records_in, review_public
from evaluation_api.reviews import store as review_store

_ERASED: dict[str, Any] = {"customer_name": None, "customer_id": None, "customer_id_hash": None}
RETENTION_ACTOR = "retencao"


class DataSubjectExport(BaseModel):
    """Every record about one customer, as handed to the person (LGPD art. 18, II)."""

    customer_id: str
    generated_at: datetime
    evaluations: list[EvaluationRecord] = Field(description="Oldest first, each with its newest review case")
    reviews: list[ReviewPublic] = Field(description="Every review case of those evaluations, oldest first")


class AnonymizationResult(BaseModel):
    customer_id: str
    anonymized_at: datetime
    evaluation_ids: list[str] = Field(description="The records anonymised now (those already anonymised excluded)")


def _ids_of(connection: Connection, keys: DataKeys, customer_id: str) -> list[str]:
    query = (
        select(EvaluationRow.id)
        .where(EvaluationRow.customer_id_hash == keys.customer_hash(customer_id))
        .order_by(EvaluationRow.created_at, EvaluationRow.id)
    )
    return [str(i) for i in connection.execute(query).scalars()]


def _events(context: audit.Context, action: str, ids: list[str], **details: Any) -> list[dict[str, Any]]:
    return [audit.event(context, action, target_type="evaluation", target_id=i, details=details or None) for i in ids]


def export(
    engine: Engine, keys: DataKeys, context: audit.Context, customer_id: str, *, now: datetime
) -> DataSubjectExport:
    with engine.begin() as connection:
        ids = _ids_of(connection, keys, customer_id)
        records = read_records_in(connection, keys, ids)
        cases = review_store.cases_of(connection, keys, ids)
        audit.append(connection, *_events(context, "data_subject.export", ids))
    every_case = sorted((c for found in cases.values() for c in found), key=lambda c: (c.opened_at, c.id))
    return DataSubjectExport(
        customer_id=customer_id,
        generated_at=now,
        evaluations=records,
        reviews=[review_public(c) for c in every_case],
    )


def anonymize(
    engine: Engine, keys: DataKeys, context: audit.Context, customer_id: str, *, now: datetime
) -> AnonymizationResult:
    with engine.begin() as connection:
        ids = _ids_of(connection, keys, customer_id)
        if ids:
            connection.execute(
                update(EvaluationRow).where(EvaluationRow.id.in_(ids)).values(**_ERASED, anonymized_at=now)
            )
            audit.append(connection, *_events(context, "anonymize", ids, reason="data_subject_request"))
    return AnonymizationResult(customer_id=customer_id, anonymized_at=now, evaluation_ids=ids)


def anonymize_older_than(
    engine: Engine, cutoff: datetime, *, now: datetime, request_id: str = "-", batch: int = 500
) -> int:
    """Anonymise every record created before `cutoff` that still holds personal data (retention).
    Batches of `batch` rows, each its own transaction, so that a large first run does not hold one
    long write lock; a run that stops half-way is finished by the next one. Returns the count."""
    context = audit.Context(RETENTION_ACTOR, "system", request_id, None)
    total = 0
    while True:
        with engine.begin() as connection:
            ids = [
                str(i)
                for i in connection.execute(
                    select(EvaluationRow.id)
                    .where(EvaluationRow.created_at < cutoff, EvaluationRow.anonymized_at.is_(None))
                    .order_by(EvaluationRow.id)
                    .limit(batch)
                ).scalars()
            ]
            if not ids:
                return total
            connection.execute(
                update(EvaluationRow).where(EvaluationRow.id.in_(ids)).values(**_ERASED, anonymized_at=now)
            )
            audit.append(connection, *_events(context, "anonymize", ids, reason="retention"))
        total += len(ids)
