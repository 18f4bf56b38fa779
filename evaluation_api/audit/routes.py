"""GET /api/v1/audit: the audit trail, for auditors and the DPO."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from evaluation_api.audit import trail as audit
from evaluation_api.database import as_utc
from evaluation_api.deps import IdentityDep
from evaluation_api.identity.access import PrincipalDep, audit_context

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


class AuditEventPublic(BaseModel):
    id: int
    occurred_at: datetime
    actor: str
    actor_roles: str
    action: str
    target_type: str | None
    target_id: str | None
    outcome: str
    request_id: str
    client_address: str | None
    details: dict[str, Any] | None


class AuditPage(BaseModel):
    items: list[AuditEventPublic]
    limit: int
    offset: int


@router.get("", response_model=AuditPage)
async def list_events(
    request: Request,
    principal: PrincipalDep,
    identity: IdentityDep,
    record_id: str | None = Query(None, max_length=128, description="Events about this record (or account)"),
    actor: str | None = Query(None, max_length=128),
    action: str | None = Query(None, max_length=48),
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
) -> AuditPage:
    """Audit events, newest first. Reading the trail is an event too (`audit.read`)."""
    rows = await run_in_threadpool(
        audit.search,
        identity.engine,
        audit_context(request, principal),
        record_id=record_id,
        actor=actor,
        action=action,
        limit=limit,
        offset=offset,
    )
    items = [
        AuditEventPublic(
            id=r.id,
            occurred_at=as_utc(r.occurred_at),
            actor=r.actor,
            actor_roles=r.actor_roles,
            action=r.action,
            target_type=r.target_type,
            target_id=r.target_id,
            outcome=r.outcome,
            request_id=r.request_id,
            client_address=r.client_address,
            details=r.details,
        )
        for r in rows
    ]
    return AuditPage(items=items, limit=limit, offset=offset)
