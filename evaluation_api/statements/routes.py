"""GET /api/v1/evaluations/{id}/statement (JSON, for the page) and .../statement.pdf (the download).

For whoever may read the record (evaluation_api.identity.access.can_read); each issue is an audit event
(`statement.issue`, with its format) in the same transaction as the read. Only denied and review
decisions have one: an approval is not a decision the customer contests.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Path, Request, Response
from starlette.concurrency import run_in_threadpool

from evaluation_api.deps import DataKeysDep, EngineDep, SettingsDep
from evaluation_api.errors import Conflict, NotFound
from evaluation_api.evaluations.schemas import ErrorBody
from evaluation_api.identity.access import PrincipalDep, audit_context
from evaluation_api.records.reads import read_for
from evaluation_api.records.view import record_with_reviews
from evaluation_api.statements import pdf
from evaluation_api.statements.document import Statement, build

router = APIRouter(prefix="/api/v1/evaluations", tags=["statements"])

ERRORS: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorBody, "description": "No such evaluation, or not one this account may read"},
    409: {"model": ErrorBody, "description": "The decision was an approval: there is no statement to give"},
}


class NoStatement(Conflict):
    code = "no_statement"
    message = "Esta avaliação foi aprovada: só decisões negadas ou em análise têm comunicado."


EvaluationId = Path(description="The id returned when the evaluation was made")


@router.get("/{evaluation_id}/statement", response_model=Statement, responses=ERRORS)
async def get_statement(
    request: Request,
    principal: PrincipalDep,
    engine: EngineDep,
    keys: DataKeysDep,
    settings: SettingsDep,
    evaluation_id: str = EvaluationId,
) -> Statement:
    """The statement of a denied or review decision, for the customer (pt-BR): the decision, its
    principal reasons, what would change it, the data used and its source, how to ask for a review
    and by when. Each issue is audited (`statement.issue`)."""
    return await _statement(request, principal, engine, keys, settings, evaluation_id, "json")


@router.get(
    "/{evaluation_id}/statement.pdf",
    response_class=Response,
    responses={**ERRORS, 200: {"content": {"application/pdf": {}}, "description": "The statement as a PDF"}},
)
async def get_statement_pdf(
    request: Request,
    principal: PrincipalDep,
    engine: EngineDep,
    keys: DataKeysDep,
    settings: SettingsDep,
    evaluation_id: str = EvaluationId,
) -> Response:
    """The same statement as a PDF download (A4, pt-BR). Each issue is audited (`statement.issue`)."""
    statement = await _statement(request, principal, engine, keys, settings, evaluation_id, "pdf")
    document = await run_in_threadpool(pdf.render, statement)
    return Response(
        document,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="comunicado-{statement.evaluation_id}.pdf"'},
    )


async def _statement(
    request: Request,
    principal: PrincipalDep,
    engine: EngineDep,
    keys: DataKeysDep,
    settings: SettingsDep,
    evaluation_id: str,
    fmt: str,
) -> Statement:
    if len(evaluation_id) > 36:  # ids are UUIDs
        raise NotFound()
    context = audit_context(request, principal)
    row = await run_in_threadpool(
        read_for, engine, evaluation_id, principal, context, action="statement.issue", details={"format": fmt}
    )
    if row is None:
        raise NotFound()
    if row.decision == "approved":
        raise NoStatement()
    record = await run_in_threadpool(record_with_reviews, engine, keys, row)
    return build(
        record,
        issued_at=datetime.now(UTC),
        review_due_days=settings.review_due_days,
        information_due_days=settings.information_due_days,
    )
