"""POST /avaliar: the original monolith's contract, kept for the systems that still call it."""

from __future__ import annotations

from fastapi import APIRouter

from evaluation_api.deps import EvaluatorDep, RequestIdDep
from evaluation_api.evaluations.routes import ERRORS
from evaluation_api.evaluations.schemas import LegacyEvaluationCreate, LegacyEvaluationPublic
from evaluation_api.identity.access import PrincipalDep

router = APIRouter(tags=["legacy"])


@router.post("/avaliar", response_model=LegacyEvaluationPublic, responses=ERRORS)
async def avaliar(
    body: LegacyEvaluationCreate, evaluator: EvaluatorDep, request_id: RequestIdDep, principal: PrincipalDep
) -> LegacyEvaluationPublic:
    """Same evaluation as /api/v1/evaluations (recorded too), answered as the original system did:
    `nome`, `cluster` and `resposta` (the segment's description), then the new fields."""
    result = await evaluator.evaluate(body, channel="legacy", request_id=request_id, created_by=principal.subject)
    return LegacyEvaluationPublic(
        nome=body.name,
        cluster=result.segment.id,
        resposta=result.segment.description,
        id=result.id,
        decision=result.decision,
        segment=result.segment.key,
        model_version=result.model.version,
    )
