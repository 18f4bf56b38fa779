"""Decision records: the table (one row per decision, never updated), and the readiness probe that writes to it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Engine, Float, Integer, String, Table, Text, insert
from sqlalchemy.orm import Mapped

from contract import FEATURE_NAMES
from evaluation_api.database import Base


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
        # Personal data, encrypted (evaluation_api/privacy/encryption.py): Fernet tokens, never plain text. NULL
        # once the record is anonymised (a data-subject request, or retention), as anonymized_at says.
        Column("customer_name", Text, nullable=True),
        Column("customer_id", Text, nullable=True),
        Column("customer_id_hash", String(64), nullable=True, index=True),
        Column("anonymized_at", DateTime(timezone=True), nullable=True),
        *(Column(name, Float, nullable=False) for name in FEATURE_NAMES),
        Column("segment_id", Integer, nullable=False),
        Column("segment_key", String(64), nullable=False),
        Column("distances", JSON, nullable=False),
        Column("decision", String(16), nullable=False),
        Column("reasons", JSON, nullable=False),
        # decisioning/explanation.py's stored form (numbers, no sentences); NULL when there is none.
        Column("explanation", JSON(none_as_null=True), nullable=True),
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
    customer_name: Mapped[str | None]
    customer_id: Mapped[str | None]
    customer_id_hash: Mapped[str | None]
    anonymized_at: Mapped[datetime | None]
    segment_id: Mapped[int]
    segment_key: Mapped[str]
    distances: Mapped[list[float]]
    decision: Mapped[str]
    reasons: Mapped[list[dict[str, str]]]
    explanation: Mapped[dict[str, object] | None]
    model_name: Mapped[str]
    model_version: Mapped[str]
    policy_version: Mapped[str]
    evaluated_at: Mapped[datetime]
    created_at: Mapped[datetime]
    created_by: Mapped[str | None]


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
