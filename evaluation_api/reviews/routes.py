"""Human review of automated decisions (LGPD art. 20): review requests, the queue, the decision.

POST /api/v1/evaluations/{id}/review-requests       the analyst who made it, or the DPO for the customer
POST /api/v1/evaluations/{id}/information-requests  the same people: the main elements of the analysis
GET  /api/v1/reviews?status=open                     the queue, soonest due first (reviewer, auditor)
GET  /api/v1/reviews/{id}                            one case with its evaluation (reviewer, auditor)
POST /api/v1/reviews/{id}/decision                   a review's decision and justification (reviewer)
POST /api/v1/reviews/{id}/answer                     an information request's answer (reviewer)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, status
from pydantic import AfterValidator, BaseModel, Field, StringConstraints
from pydantic_core import PydanticCustomError
from sqlalchemy import Engine, select
from starlette.concurrency import run_in_threadpool

from contract import SEGMENTS
from evaluation_api.audit import trail as audit
from evaluation_api.deps import DataKeysDep, EngineDep, SettingsDep
from evaluation_api.errors import EvaluationError, InvalidInput, NotFound
from evaluation_api.evaluations.schemas import ErrorBody, EvaluationRecord, ReviewCaseBase, ReviewPublic, SegmentPublic
from evaluation_api.identity.access import PrincipalDep, audit_context
from evaluation_api.identity.roles import Principal, Role
from evaluation_api.privacy.encryption import DataKeys
from evaluation_api.records.table import EvaluationRow
from evaluation_api.records.view import case_fields, read_records_in, review_public
from evaluation_api.reviews import rules as reviews
from evaluation_api.reviews import store as review_store

router = APIRouter(tags=["reviews"])


class ReviewConflict(EvaluationError):
    status_code = 409
    code = "conflict"

    def __init__(self, refused: reviews.ReviewRefused) -> None:
        super().__init__(refused.message)
        self.code = refused.code


class FourEyesRefused(EvaluationError):
    status_code = 403
    code = "four_eyes"


class CaseNotFound(NotFound):
    message = "Caso de revisão não encontrado."


def _justification(value: str) -> str:
    if len(value) < reviews.MIN_JUSTIFICATION:
        raise PydanticCustomError(
            "justification_too_short",
            "must have at least {min_length} characters",
            {"min_length": reviews.MIN_JUSTIFICATION},
        )
    return value


Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=reviews.MAX_TEXT)]
Justification = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=reviews.MAX_TEXT),
    AfterValidator(_justification),
]


class ReviewRequestCreate(BaseModel):
    reason: Reason = Field(description="Why a person should review the decision (pt-BR text)")


class ReviewDecisionCreate(BaseModel):
    decision: Literal["approved", "denied"]
    justification: Justification = Field(
        description=f"Why (at least {reviews.MIN_JUSTIFICATION} characters; the customer may read it)"
    )


class InformationAnswerCreate(BaseModel):
    answer: Justification = Field(
        description=f"What the customer was told (at least {reviews.MIN_JUSTIFICATION} characters), e.g. that the "
        "statement of the decision was sent, and by which channel"
    )


class ReviewQueueItem(ReviewCaseBase):
    age_s: int = Field(description="Seconds since the case was opened")
    automated_decision: str
    segment: str
    final_decision: Literal["approved", "denied"] | None


class ReviewQueuePage(BaseModel):
    items: list[ReviewQueueItem]
    total: int
    limit: int
    offset: int


class ReviewCaseDetail(BaseModel):
    """One case and everything a reviewer needs to decide it."""

    case: ReviewPublic
    evaluation: EvaluationRecord
    segments: list[SegmentPublic] = Field(description="Every segment, by id: the labels of `evaluation.distances`")


ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody},
    409: {"model": ErrorBody, "description": "A case is already open, or the case is already decided"},
    422: {"model": ErrorBody, "description": "A field breaks its rule"},
    503: {"model": ErrorBody, "description": "The database is unavailable (Retry-After)"},
}


def _evaluation_of(engine: Engine, evaluation_id: str) -> tuple[str, str | None] | None:
    with engine.connect() as connection:
        row = connection.execute(
            select(EvaluationRow.id, EvaluationRow.created_by).where(EvaluationRow.id == evaluation_id)
        ).first()
    return (row[0], row[1]) if row is not None else None


def _may_request(principal: Principal, created_by: str | None) -> bool:
    """The analyst who made the evaluation, or the DPO acting for the customer."""
    return principal.has(Role.DPO) or (created_by is not None and created_by == principal.subject)


@router.post(
    "/api/v1/evaluations/{evaluation_id}/review-requests",
    status_code=status.HTTP_201_CREATED,
    response_model=ReviewPublic,
    responses=ERRORS,
)
async def request_review(
    body: ReviewRequestCreate,
    request: Request,
    principal: PrincipalDep,
    engine: EngineDep,
    keys: DataKeysDep,
    settings: SettingsDep,
    evaluation_id: str = Path(max_length=36),
) -> ReviewPublic:
    """Ask for a person to review an automated decision (LGPD art. 20), due in REVIEW_DUE_DAYS calendar
    days. One open review per evaluation."""
    return await _open(request, principal, engine, keys, evaluation_id, body.reason, "review", settings.review_due_days)


@router.post(
    "/api/v1/evaluations/{evaluation_id}/information-requests",
    status_code=status.HTTP_201_CREATED,
    response_model=ReviewPublic,
    responses=ERRORS,
)
async def request_information(
    body: ReviewRequestCreate,
    request: Request,
    principal: PrincipalDep,
    engine: EngineDep,
    keys: DataKeysDep,
    settings: SettingsDep,
    evaluation_id: str = Path(max_length=36),
) -> ReviewPublic:
    """The customer asks for the main elements and criteria of the analysis (Lei 12.414/2011 art. 5),
    due in INFORMATION_DUE_DAYS calendar days (10). One open request per evaluation."""
    return await _open(
        request, principal, engine, keys, evaluation_id, body.reason, "information", settings.information_due_days
    )


async def _open(
    request: Request,
    principal: Principal,
    engine: Engine,
    keys: DataKeys,
    evaluation_id: str,
    reason: str,
    kind: reviews.Kind,
    due_in_days: int,
) -> ReviewPublic:
    try:
        found = await run_in_threadpool(_evaluation_of, engine, evaluation_id)
        if found is None or not _may_request(principal, found[1]):
            raise NotFound()  # another analyst's evaluation: do not reveal that it exists
        case = await run_in_threadpool(
            review_store.open_requested,
            engine,
            keys,
            audit_context(request, principal),
            evaluation_id=evaluation_id,
            reason=reason,
            now=datetime.now(UTC),
            due_in_days=due_in_days,
            kind=kind,
        )
    except reviews.CaseAlreadyOpen as exc:
        raise ReviewConflict(exc) from None
    return review_public(case)


def _queue(
    engine: Engine, keys: DataKeys, context: audit.Context, *, status: str | None, limit: int, offset: int
) -> ReviewQueuePage:
    page = review_store.list_cases(engine, keys, status=status, limit=limit, offset=offset)
    ids = [case.evaluation_id for case in page.items]
    with engine.begin() as connection:
        decisions = {
            row.id: (row.decision, row.segment_key)
            for row in connection.execute(
                select(EvaluationRow.id, EvaluationRow.decision, EvaluationRow.segment_key).where(
                    EvaluationRow.id.in_(ids)
                )
            )
        }
        audit.append(
            connection,
            audit.event(context, "review.list", details={"status": status, "limit": limit, "offset": offset}),
        )
    now = datetime.now(UTC)
    return ReviewQueuePage(
        items=[
            ReviewQueueItem(
                **case_fields(case),
                age_s=max(0, int((now - case.opened_at).total_seconds())),
                automated_decision=decisions[case.evaluation_id][0],
                segment=decisions[case.evaluation_id][1],
                final_decision=case.final_decision,
            )
            for case in page.items
        ],
        total=page.total,
        limit=limit,
        offset=offset,
    )


@router.get("/api/v1/reviews", response_model=ReviewQueuePage, responses=ERRORS)
async def list_reviews(
    request: Request,
    principal: PrincipalDep,
    engine: EngineDep,
    keys: DataKeysDep,
    status: Literal["open", "closed"] | None = Query(None, description="open: the queue; omitted: every case"),
    limit: int = Query(50, ge=1, le=200),
    offset: int = Query(0, ge=0),
) -> ReviewQueuePage:
    """Review cases and information requests, the soonest due first, with their age and days left:
    the reviewers' queue."""
    return await run_in_threadpool(
        _queue, engine, keys, audit_context(request, principal), status=status, limit=limit, offset=offset
    )


def _detail(engine: Engine, keys: DataKeys, context: audit.Context, case_id: str) -> ReviewCaseDetail | None:
    with engine.begin() as connection:
        row = connection.execute(
            select(review_store.ReviewCaseRow).where(review_store.ReviewCaseRow.id == case_id)
        ).first()
        if row is None:
            return None
        [record] = read_records_in(connection, keys, [row.evaluation_id])
        audit.append(
            connection,
            audit.event(
                context,
                "review.read",
                target_type="evaluation",
                target_id=row.evaluation_id,
                details={"case_id": row.id},
            ),
        )
    return ReviewCaseDetail(
        case=review_public(review_store.to_case(row, keys)),
        evaluation=record,
        segments=[SegmentPublic(id=s.id, key=s.key, description=s.description) for s in SEGMENTS],
    )


@router.get("/api/v1/reviews/{case_id}", response_model=ReviewCaseDetail, responses=ERRORS)
async def get_review(
    request: Request,
    principal: PrincipalDep,
    engine: EngineDep,
    keys: DataKeysDep,
    case_id: str = Path(max_length=36),
) -> ReviewCaseDetail:
    """One case, with the evaluation's figures, segment, reasons and distances to every segment."""
    detail = await run_in_threadpool(_detail, engine, keys, audit_context(request, principal), case_id)
    if detail is None:
        raise CaseNotFound()
    return detail


@router.post("/api/v1/reviews/{case_id}/decision", response_model=ReviewPublic, responses=ERRORS)
async def decide_review(
    body: ReviewDecisionCreate,
    request: Request,
    principal: PrincipalDep,
    engine: EngineDep,
    keys: DataKeysDep,
    case_id: str = Path(max_length=36),
) -> ReviewPublic:
    """The reviewer's decision, with its justification. The automated decision stays as it was; the
    evaluation's record shows both. Not by the account that made the evaluation (four eyes)."""
    try:
        case = await run_in_threadpool(
            review_store.record_decision,
            engine,
            keys,
            audit_context(request, principal),
            case_id=case_id,
            decision=body.decision,
            justification=body.justification,
            now=datetime.now(UTC),
        )
    except reviews.FourEyes as exc:
        raise FourEyesRefused(exc.message) from None
    except (reviews.CaseClosed, reviews.WrongKind) as exc:
        raise ReviewConflict(exc) from None
    except reviews.InvalidJustification as exc:  # the body's own rule already refuses these
        raise InvalidInput([{"field": "justification", "rule": "min_length", "message": exc.message}]) from None
    if case is None:
        raise CaseNotFound()
    return review_public(case)


@router.post("/api/v1/reviews/{case_id}/answer", response_model=ReviewPublic, responses=ERRORS)
async def answer_information_request(
    body: InformationAnswerCreate,
    request: Request,
    principal: PrincipalDep,
    engine: EngineDep,
    keys: DataKeysDep,
    case_id: str = Path(max_length=36),
) -> ReviewPublic:
    """Close an information request with what the customer was told. A review case is 409 `wrong_kind`."""
    try:
        case = await run_in_threadpool(
            review_store.record_answer,
            engine,
            keys,
            audit_context(request, principal),
            case_id=case_id,
            text=body.answer,
            now=datetime.now(UTC),
        )
    except (reviews.CaseClosed, reviews.WrongKind) as exc:
        raise ReviewConflict(exc) from None
    except reviews.InvalidJustification as exc:  # the body's own rule already refuses these
        raise InvalidInput([{"field": "answer", "rule": "min_length", "message": exc.message}]) from None
    if case is None:
        raise CaseNotFound()
    return review_public(case)
