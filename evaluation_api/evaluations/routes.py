"""POST /api/v1/evaluations, GET /api/v1/evaluations (a list) and GET /api/v1/evaluations/{id}."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request, Response, status
from pydantic import BeforeValidator
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from contract import SEGMENTS_BY_KEY
from evaluation_api.database import as_utc
from evaluation_api.deps import DataKeysDep, EngineDep, EvaluatorDep, RequestIdDep
from evaluation_api.errors import Conflict, NotFound
from evaluation_api.evaluations import idempotency
from evaluation_api.evaluations.flow import Evaluator
from evaluation_api.evaluations.schemas import ErrorBody, EvaluationCreate, EvaluationPublic, EvaluationRecord
from evaluation_api.identity.access import PrincipalDep, audit_context
from evaluation_api.identity.roles import Principal
from evaluation_api.records.reads import (
    EvaluationPage,
    EvaluationSummary,
    ListFilters,
    ReviewSummary,
    list_for,
    read_for,
)
from evaluation_api.records.view import newest_reviews, read_records, record_with_reviews

router = APIRouter(prefix="/api/v1/evaluations", tags=["evaluations"])

ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorBody, "description": "A field breaks its rule"},
    503: {"model": ErrorBody, "description": "The model service or the database is unavailable (Retry-After)"},
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=EvaluationPublic,
    responses={**ERRORS, 409: {"model": ErrorBody, "description": "Idempotency-Key reused with another body"}},
)
async def create_evaluation(
    body: EvaluationCreate,
    evaluator: EvaluatorDep,
    request_id: RequestIdDep,
    principal: PrincipalDep,
    engine: EngineDep,
    response: Response,
    idempotency_key: str | None = Header(
        None,
        alias="Idempotency-Key",
        min_length=1,
        max_length=idempotency.MAX_KEY_LENGTH,
        description="Retry-safe: the same key and body from the same account within 24 h answer the first "
        "evaluation (same id, `Idempotent-Replayed: true`); another body with the key is a 409",
    ),
) -> EvaluationPublic:
    """Segment the customer, apply the policy and record the decision (committed before this answers)."""
    if idempotency_key is None:
        return await evaluator.evaluate(body, channel="api", request_id=request_id, created_by=principal.subject)
    return await _idempotent(body, evaluator, request_id, principal, engine, response, idempotency_key)


class IdempotencyConflict(Conflict):
    code = "idempotency_key_reused"
    message = "Esta Idempotency-Key já foi usada com outros dados. Use uma chave nova para uma nova avaliação."


class IdempotencyInProgress(Conflict):
    code = "idempotency_in_progress"
    message = "A avaliação com esta Idempotency-Key ainda está em andamento. Tente novamente em instantes."


async def _idempotent(
    body: EvaluationCreate,
    evaluator: Evaluator,
    request_id: str,
    principal: Principal,
    engine: Engine,
    response: Response,
    key: str,
) -> EvaluationPublic:
    digest = idempotency.body_digest(body.model_dump(mode="json"))
    outcome = await run_in_threadpool(idempotency.reserve, engine, principal.subject, key, digest)
    if isinstance(outcome, idempotency.Mismatch):
        raise IdempotencyConflict()
    if isinstance(outcome, idempotency.InProgress):
        raise IdempotencyInProgress(retry_after_s=1)
    if isinstance(outcome, idempotency.Replay):
        records = await run_in_threadpool(read_records, engine, evaluator.keys, [outcome.evaluation_id])
        if not records:  # cannot happen: records are never deleted
            raise IdempotencyConflict()
        response.headers["Idempotent-Replayed"] = "true"
        return EvaluationPublic(**records[0].model_dump(include=set(EvaluationPublic.model_fields)))
    try:
        result = await evaluator.evaluate(body, channel="api", request_id=request_id, created_by=principal.subject)
    except BaseException:
        # Nothing was decided: free the key, so that the client's retry evaluates.
        await run_in_threadpool(idempotency.release, engine, principal.subject, key)
        raise
    await run_in_threadpool(idempotency.complete, engine, principal.subject, key, result.id)
    return result


_ISO_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _iso_date_time(value: object) -> object:
    # pydantic reads a number ("0.5") as a Unix time; the schema promises an ISO 8601 date-time only.
    if isinstance(value, str) and not _ISO_DATE_TIME.match(value):
        raise ValueError("must be an ISO 8601 date-time, e.g. 2026-12-05T10:00:00Z")
    return value


DateTimeQuery = Annotated[datetime, BeforeValidator(_iso_date_time)]


@router.get("", response_model=EvaluationPage, responses={422: {"model": ErrorBody}})
async def list_evaluations(
    request: Request,
    principal: PrincipalDep,
    engine: EngineDep,
    keys: DataKeysDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    created_by: Annotated[str | None, Query(max_length=128, description="Reviewers, auditors, DPO: whose")] = None,
    decision: Annotated[Literal["approved", "review", "denied"] | None, Query()] = None,
    customer_id: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[DateTimeQuery | None, Query(description="Made at or after (ISO 8601 date-time)")] = None,
    until: Annotated[DateTimeQuery | None, Query(description="Made before (ISO 8601 date-time)")] = None,
) -> EvaluationPage:
    """The caller's own evaluations, newest first (reviewers, auditors and the DPO: everyone's, filtered)."""
    filters = ListFilters(
        created_by=created_by,
        decision=decision,
        customer_id_hash=keys.customer_hash(customer_id) if customer_id is not None else None,
        since=since,
        until=until,
    )
    rows, more = await run_in_threadpool(
        list_for, engine, principal, audit_context(request, principal), filters, limit=limit, offset=offset
    )
    reviews = await run_in_threadpool(newest_reviews, engine, keys, [row.id for row in rows])
    items = []
    for row in rows:
        segment = SEGMENTS_BY_KEY.get(row.segment_key)
        review = reviews.get(row.id)
        items.append(
            EvaluationSummary(
                id=row.id,
                name=keys.decrypt(row.customer_name) if row.customer_name is not None else None,
                customer_id=keys.decrypt(row.customer_id) if row.customer_id is not None else None,
                decision=row.decision,
                segment={
                    "id": row.segment_id,
                    "key": row.segment_key,
                    "description": segment.description if segment else "",
                },
                channel=row.channel,
                created_by=row.created_by,
                evaluated_at=as_utc(row.evaluated_at),
                anonymized=row.anonymized_at is not None,
                review=ReviewSummary(id=review.id, status=review.status, final_decision=review.final_decision)
                if review is not None
                else None,
            )
        )
    return EvaluationPage(items=items, limit=limit, offset=offset, next_offset=offset + limit if more else None)


@router.get("/{evaluation_id}", response_model=EvaluationRecord, responses={404: {"model": ErrorBody}})
async def get_evaluation(
    request: Request,
    principal: PrincipalDep,
    engine: EngineDep,
    keys: DataKeysDep,
    evaluation_id: str = Path(description="The id returned when the evaluation was made"),
) -> EvaluationRecord:
    """The stored record of one decision: inputs, outputs, versions, request id and timestamps, whether it
    was anonymised, and its human review (`review`: the newest case, with the final decision). For the
    account that made it, reviewers, auditors and the DPO; anyone else gets 404. Every read is audited."""
    if len(evaluation_id) > 36:  # ids are UUIDs: a longer one is simply not one of ours
        raise NotFound()
    row = await run_in_threadpool(read_for, engine, evaluation_id, principal, audit_context(request, principal))
    if row is None:
        raise NotFound()
    return await run_in_threadpool(record_with_reviews, engine, keys, row)
