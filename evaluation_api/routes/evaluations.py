"""POST /api/v1/evaluations and GET /api/v1/evaluations/{id}."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Path, status
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from contract import FEATURE_NAMES, SEGMENTS_BY_KEY
from evaluation_api.db import EvaluationRow, read_record
from evaluation_api.deps import EngineDep, EvaluatorDep, RequestIdDep
from evaluation_api.errors import DatabaseUnavailable, NotFound
from evaluation_api.schemas import ErrorBody, EvaluationCreate, EvaluationPublic, EvaluationRecord

router = APIRouter(prefix="/api/v1/evaluations", tags=["evaluations"])

ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorBody, "description": "A field breaks its rule"},
    503: {"model": ErrorBody, "description": "The model service or the database is unavailable (Retry-After)"},
}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=EvaluationPublic, responses=ERRORS)
async def create_evaluation(
    body: EvaluationCreate, evaluator: EvaluatorDep, request_id: RequestIdDep
) -> EvaluationPublic:
    """Segment the customer, apply the policy and record the decision (committed before this answers)."""
    return await evaluator.evaluate(body, channel="api", request_id=request_id)


def _utc(moment: datetime) -> datetime:
    # SQLite keeps no time zone; every timestamp we write is UTC.
    return moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _record(row: EvaluationRow) -> EvaluationRecord:
    segment = SEGMENTS_BY_KEY.get(row.segment_key)
    # Validated from the stored values, except the input: stored as it was accepted, it is not
    # checked again against today's rules.
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
            "model": {"name": row.model_name, "version": row.model_version},
            "policy_version": row.policy_version,
            "evaluated_at": _utc(row.evaluated_at),
            "request_id": row.request_id,
            "input": EvaluationCreate.model_construct(
                name=row.customer_name,
                customer_id=row.customer_id,
                **{name: getattr(row, name) for name in FEATURE_NAMES},
            ),
            "distances": row.distances,
            "channel": row.channel,
            "created_at": _utc(row.created_at),
        }
    )


@router.get("/{evaluation_id}", response_model=EvaluationRecord, responses={404: {"model": ErrorBody}})
async def get_evaluation(
    engine: EngineDep,
    evaluation_id: str = Path(description="The id returned when the evaluation was made"),
) -> EvaluationRecord:
    """The stored record of one decision: inputs, outputs, versions, request id and timestamps."""
    if len(evaluation_id) > 36:  # ids are UUIDs: a longer one is simply not one of ours
        raise NotFound()
    try:
        row = await run_in_threadpool(read_record, engine, evaluation_id)
    except SQLAlchemyError:
        raise DatabaseUnavailable(
            "Não foi possível consultar a avaliação agora. Tente novamente em alguns segundos."
        ) from None
    if row is None:
        raise NotFound()
    return _record(row)
