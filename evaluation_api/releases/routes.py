"""Change control over the API: policy versions, challengers in shadow, their report, promotion and rollback.

POST /api/v1/policy-versions                    register a policy file as a draft (risk, admin)
GET  /api/v1/policy-versions[/{id}]             the versions (risk, admin, auditor)
POST /api/v1/model-versions                      register a model version a model service serves (risk, admin)
GET  /api/v1/model-versions[/{id}]               the model versions, with their cards (risk, admin, auditor)
POST /api/v1/challengers                        put a policy and/or model version in shadow (risk, admin)
GET  /api/v1/challengers                        the challengers (risk, admin, auditor)
POST /api/v1/challengers/{id}/stop              end the shadow (risk, admin)
GET  /api/v1/challengers/{id}/report            live x challenger decisions since it started, and its backtests
                                                (risk, admin, auditor)
POST /api/v1/challengers/{id}/promote           make it live, by someone other than its author (risk, admin)
GET  /api/v1/releases                           what was live when, newest first (risk, admin, auditor)
POST /api/v1/releases/rollback                  back to the previous live policy, in one step (risk, admin)
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request, status
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from contract import Decision
from decisioning.policy import PolicyError
from evaluation_api.database import as_utc
from evaluation_api.deps import EngineDep, SettingsDep
from evaluation_api.errors import EvaluationError, InvalidInput
from evaluation_api.evaluations.schemas import ErrorBody
from evaluation_api.identity.access import PrincipalDep, audit_context
from evaluation_api.model_client.services import ModelServices
from evaluation_api.releases import registry
from evaluation_api.releases.table import VersionStatus
from evaluation_api.reviews.routes import Justification  # the same rule as a review's: 20 characters or more

router = APIRouter(tags=["change control"])


class ReleaseError(EvaluationError):
    def __init__(self, refused: registry.ReleaseRefused) -> None:
        super().__init__(refused.message)
        self.code, self.status_code = refused.code, refused.status_code


def _invalid_policy(exc: PolicyError) -> InvalidInput:
    return InvalidInput(
        [
            {
                "field": "text",
                "rule": "policy",
                "line": problem.line,  # type: ignore[dict-item]
                "location": problem.location,
                "message": f"Política recusada: {problem}",
            }
            for problem in exc.problems
        ]
        or [{"field": "text", "rule": "policy", "message": f"Política recusada: {exc}"}]
    )


class PolicyVersionCreate(BaseModel):
    text: str = Field(
        min_length=1,
        max_length=registry.MAX_POLICY_BYTES,
        description="The policy file (YAML, the format of decisioning/policy.yaml), as text",
    )


class PolicyVersionPublic(BaseModel):
    id: int
    label: str = Field(description="The file's own `version:`, which records name")
    sha256: str
    author: str
    created_at: datetime
    status: VersionStatus


class PolicyVersionFull(PolicyVersionPublic):
    text: str


class ModelVersionCreate(BaseModel):
    version: str = Field(
        pattern=r"^[0-9a-f]{16}$",
        description="The model's version (16 hex digits, its BentoML tag's version); a model service this "
        "deployment knows (MODEL_SERVICE_URL or CANDIDATE_MODEL_SERVICE_URLS) must serve it",
    )


class ModelVersionPublic(BaseModel):
    id: int
    version: str
    tag: str
    service_url: str = Field(description="The model service that serves it")
    author: str
    created_at: datetime
    status: VersionStatus
    card: dict[str, Any] = Field(description="The model card (training data, silhouette, segment shares)")


class ChallengerCreate(BaseModel):
    policy_version_id: int | None = Field(None, ge=1, description="A policy version; omitted: the live policy")
    model_version_id: int | None = Field(None, ge=1, description="A model version; omitted: the live model")


class ChallengerPublic(BaseModel):
    id: int
    policy_version_id: int | None
    policy_version: str | None = Field(description="Its policy's label; None: it decides with the live policy")
    model_version_id: int | None
    model_version: str | None = Field(description="Its model's version; None: the live model's segment")
    started_by: str
    started_at: datetime
    stopped_by: str | None
    stopped_at: datetime | None
    outcome: str | None


class Justified(BaseModel):
    justification: Justification = Field(description="Why (at least 20 characters), kept in the audit trail")


class ReleasePublic(BaseModel):
    id: int
    policy_version_id: int
    policy_version: str
    model_version_id: int | None
    model_version: str | None = Field(description="None: the model MODEL_SERVICE_URL serves")
    action: Literal["seed", "promote", "rollback"]
    actor: str
    justification: str | None
    challenger_id: int | None
    previous_id: int | None = Field(description="The release a rollback from this one returns to; None: none")
    created_at: datetime
    effective_at: datetime = Field(description="From this instant every API process decides with it")


class Backtest(BaseModel):
    """A portfolio run that named the challenger: its file decided by the live policy and by the challenger's."""

    run_id: str
    file_name: str
    created_at: datetime
    created_by: str
    rows_total: int
    rows_invalid: int = Field(description="Rows the API would refuse: in neither matrix")
    changed: int = Field(description="Valid rows the challenger decided otherwise")
    overall: dict[Decision, dict[Decision, int]] = Field(description="live decision -> challenger decision -> rows")
    by_segment: dict[str, dict[Decision, dict[Decision, int]]]


class SwapReport(BaseModel):
    challenger_id: int
    policy_version_id: int | None
    policy_version: str | None
    model_version_id: int | None
    model_version: str | None
    started_at: datetime
    stopped_at: datetime | None
    evaluations: int = Field(description="Evaluations the challenger decided in shadow")
    changed: int = Field(description="Of those, how many it would have decided otherwise")
    swap: dict[Decision, dict[Decision, int]] = Field(description="live decision -> challenger decision -> count")
    by_segment: dict[str, dict[Decision, dict[Decision, int]]]
    segment_moves: dict[str, dict[str, int]] = Field(
        description="live segment -> challenger model's segment -> count (the diagonal only, without a model)"
    )
    backtests: list[Backtest] = Field(
        description="Succeeded portfolio runs that named this challenger (challenger_id), newest first"
    )


_REFUSALS: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorBody, "description": "`four_eyes`: the version's author cannot promote it"},
    404: {"model": ErrorBody, "description": "No such version or challenger"},
    409: {"model": ErrorBody, "description": "The step does not apply now (e.g. the version is retired)"},
}


def _version(row: Any) -> PolicyVersionPublic:
    return PolicyVersionPublic(
        id=row.id, label=row.label, sha256=row.sha256, author=row.author, created_at=as_utc(row.created_at),
        status=row.status,
    )  # fmt: skip


def _model(row: Any) -> ModelVersionPublic:
    return ModelVersionPublic(
        id=row.id, version=row.version, tag=row.tag, service_url=row.service_url, author=row.author,
        created_at=as_utc(row.created_at), status=row.status, card=row.metadata_.get("card") or {},
    )  # fmt: skip


def _challenger(row: Any, label: str | None, model_version: str | None) -> ChallengerPublic:
    return ChallengerPublic(
        id=row.id, policy_version_id=row.policy_version_id, policy_version=label,
        model_version_id=row.model_version_id, model_version=model_version, started_by=row.started_by,
        started_at=as_utc(row.started_at), stopped_by=row.stopped_by, stopped_at=as_utc(row.stopped_at),
        outcome=row.outcome,
    )  # fmt: skip


def _release(row: Any, label: str, model_version: str | None) -> ReleasePublic:
    return ReleasePublic(
        id=row.id, policy_version_id=row.policy_version_id, policy_version=label,
        model_version_id=row.model_version_id, model_version=model_version, action=row.action,
        actor=row.actor, justification=row.justification, challenger_id=row.challenger_id,
        previous_id=row.previous_id, created_at=as_utc(row.created_at), effective_at=as_utc(row.effective_at),
    )  # fmt: skip


async def _call(function: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return await run_in_threadpool(function, *args, **kwargs)
    except registry.ReleaseRefused as exc:
        raise ReleaseError(exc) from None


VersionId = Annotated[int, Path(ge=1)]


@router.post(
    "/api/v1/policy-versions",
    status_code=status.HTTP_201_CREATED,
    responses={
        **_REFUSALS,
        422: {"model": ErrorBody, "description": "The file does not validate: each problem, its line"},
    },
)
async def create_policy_version(
    body: PolicyVersionCreate, request: Request, principal: PrincipalDep, engine: EngineDep
) -> PolicyVersionPublic:
    """Register a policy file as a draft version. It decides nothing until it is promoted."""
    try:
        row = await _call(registry.register, engine, body.text, context=audit_context(request, principal))
    except PolicyError as exc:
        raise _invalid_policy(exc) from None
    return _version(row)


@router.get("/api/v1/policy-versions")
async def list_policy_versions(engine: EngineDep) -> list[PolicyVersionPublic]:
    return [_version(row) for row in await run_in_threadpool(registry.versions, engine)]


@router.get("/api/v1/policy-versions/{version_id}", responses=_REFUSALS)
async def get_policy_version(version_id: VersionId, engine: EngineDep) -> PolicyVersionFull:
    row = await run_in_threadpool(registry.version, engine, version_id)
    if row is None:
        raise ReleaseError(registry.ReleaseRefused("not_found", "Versão de política não encontrada.", status_code=404))
    return PolicyVersionFull(**_version(row).model_dump(), text=row.text)


@router.post(
    "/api/v1/model-versions",
    status_code=status.HTTP_201_CREATED,
    responses={
        **_REFUSALS,
        422: {"model": ErrorBody, "description": "No model service this deployment knows serves that version"},
    },
)
async def create_model_version(
    body: ModelVersionCreate, request: Request, principal: PrincipalDep, engine: EngineDep
) -> ModelVersionPublic:
    """Register a model version as a draft, with the card and parameters its service reports. It decides
    nothing until a challenger with it is promoted."""
    services: ModelServices = request.app.state.model_services
    answers = await services.metadata_of_each()
    for url, answer in answers:
        if isinstance(answer, dict) and (answer.get("model") or {}).get("version") == body.version:
            row = await _call(
                registry.register_model, engine, answer, service_url=url, context=audit_context(request, principal)
            )
            return _model(row)
    served = ", ".join(
        f"{url} serve {(a.get('model') or {}).get('version')}" if isinstance(a, dict) else f"{url} não respondeu"
        for url, a in answers
    )
    raise InvalidInput(
        [
            {
                "field": "version",
                "rule": "served",
                "message": f"Nenhum serviço de modelo conhecido serve a versão {body.version} ({served}). "
                "Sirva-a primeiro (make serve-candidate) num endereço de CANDIDATE_MODEL_SERVICE_URLS.",
            }
        ]
    )


@router.get("/api/v1/model-versions")
async def list_model_versions(engine: EngineDep) -> list[ModelVersionPublic]:
    return [_model(row) for row in await run_in_threadpool(registry.model_versions, engine)]


@router.get("/api/v1/model-versions/{version_id}", responses=_REFUSALS)
async def get_model_version(version_id: VersionId, engine: EngineDep) -> ModelVersionPublic:
    row = await run_in_threadpool(registry.model_version, engine, version_id)
    if row is None:
        raise ReleaseError(registry.ReleaseRefused("not_found", "Versão de modelo não encontrada.", status_code=404))
    return _model(row)


@router.post(
    "/api/v1/challengers",
    status_code=status.HTTP_201_CREATED,
    responses={**_REFUSALS, 422: {"model": ErrorBody, "description": "Neither a policy nor a model version"}},
)
async def start_challenger(
    body: ChallengerCreate, request: Request, principal: PrincipalDep, engine: EngineDep
) -> ChallengerPublic:
    """From now on every evaluation is also decided, in shadow, by this pair (a half not given is the live
    one's); never shown, never changing the answer. Every API process starts within RELEASE_POLL_S."""
    if body.policy_version_id is None and body.model_version_id is None:
        raise InvalidInput(
            [
                {
                    "field": "policy_version_id",
                    "rule": "one_of",
                    "message": "Indique policy_version_id, model_version_id, ou ambos.",
                }
            ]
        )
    row = await _call(
        registry.start_challenger,
        engine,
        body.policy_version_id,
        model_version_id=body.model_version_id,
        context=audit_context(request, principal),
    )
    found = next(c for c in await run_in_threadpool(registry.challengers, engine) if c[0].id == row.id)
    return _challenger(*found)


@router.get("/api/v1/challengers")
async def list_challengers(engine: EngineDep) -> list[ChallengerPublic]:
    return [_challenger(*found) for found in await run_in_threadpool(registry.challengers, engine)]


@router.post("/api/v1/challengers/{challenger_id}/stop", status_code=status.HTTP_204_NO_CONTENT, responses=_REFUSALS)
async def stop_challenger(
    challenger_id: VersionId, request: Request, principal: PrincipalDep, engine: EngineDep
) -> None:
    await _call(registry.stop_challenger, engine, challenger_id, context=audit_context(request, principal))


@router.get("/api/v1/challengers/{challenger_id}/report", responses=_REFUSALS)
async def challenger_report(challenger_id: VersionId, engine: EngineDep) -> SwapReport:
    """The swap set: how many evaluations each (live decision, challenger decision) pair holds, overall and
    by segment, since the challenger started; and the same over each portfolio file a backtest ran."""
    return SwapReport(**await _call(registry.report, engine, challenger_id))


@router.post("/api/v1/challengers/{challenger_id}/promote", responses=_REFUSALS)
async def promote_challenger(
    challenger_id: VersionId,
    body: Justified,
    request: Request,
    principal: PrincipalDep,
    engine: EngineDep,
    settings: SettingsDep,
) -> ReleasePublic:
    """Make the challenger's version live in every API process at `effective_at` (no restart), by someone
    other than its author; the version live until then is retired."""
    release = await _call(
        registry.promote,
        engine,
        challenger_id,
        justification=body.justification,
        context=audit_context(request, principal),
        switch_delay_s=settings.release_switch_delay_s,
    )
    return await _release_public(engine, release)


async def _release_public(engine: Any, release: Any) -> ReleasePublic:
    found = next(r for r in await run_in_threadpool(registry.releases, engine, limit=5) if r[0].id == release.id)
    return _release(*found)


@router.get("/api/v1/releases")
async def list_releases(engine: EngineDep) -> list[ReleasePublic]:
    return [_release(*found) for found in await run_in_threadpool(registry.releases, engine)]


@router.post("/api/v1/releases/rollback", responses=_REFUSALS)
async def rollback(
    body: Justified, request: Request, principal: PrincipalDep, engine: EngineDep, settings: SettingsDep
) -> ReleasePublic:
    """Return to the policy the newest release replaced, in every API process at `effective_at`."""
    release = await _call(
        registry.rollback,
        engine,
        justification=body.justification,
        context=audit_context(request, principal),
        switch_delay_s=settings.release_switch_delay_s,
    )
    return await _release_public(engine, release)
