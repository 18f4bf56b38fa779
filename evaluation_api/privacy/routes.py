"""Data-subject requests (LGPD art. 18), for the data-protection officer (role dpo).

GET  /api/v1/data-subjects/{customer_id}             every record about the customer, to hand to them
POST /api/v1/data-subjects/{customer_id}/anonymize   erase their name and customer id from every record
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Path, Request
from starlette.concurrency import run_in_threadpool

from evaluation_api.deps import DataKeysDep, EngineDep
from evaluation_api.evaluations.schemas import ErrorBody
from evaluation_api.identity.access import PrincipalDep, audit_context
from evaluation_api.privacy import data_subjects

router = APIRouter(prefix="/api/v1/data-subjects", tags=["data subjects"])

ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorBody, "description": "The customer id breaks its rule"},
    503: {"model": ErrorBody, "description": "The database is unavailable (Retry-After)"},
}
# The rule of EvaluationCreate.customer_id.
CUSTOMER_ID = Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$", description="The customer's id")


@router.get("/{customer_id}", response_model=data_subjects.DataSubjectExport, responses=ERRORS)
async def export_data_subject(
    request: Request, principal: PrincipalDep, engine: EngineDep, keys: DataKeysDep, customer_id: str = CUSTOMER_ID
) -> data_subjects.DataSubjectExport:
    """Every record about the customer (evaluations and their reviews), as JSON to hand to the person.
    An empty list when nothing is stored (or everything was anonymised). Each record read is an audit event."""
    return await run_in_threadpool(
        data_subjects.export, engine, keys, audit_context(request, principal), customer_id, now=datetime.now(UTC)
    )


@router.post("/{customer_id}/anonymize", response_model=data_subjects.AnonymizationResult, responses=ERRORS)
async def anonymize_data_subject(
    request: Request, principal: PrincipalDep, engine: EngineDep, keys: DataKeysDep, customer_id: str = CUSTOMER_ID
) -> data_subjects.AnonymizationResult:
    """Erase the customer's name and id from every record; figures, decisions, versions and reviews stay.
    Each record anonymised is an audit event (action `anonymize`)."""
    return await run_in_threadpool(
        data_subjects.anonymize, engine, keys, audit_context(request, principal), customer_id, now=datetime.now(UTC)
    )
