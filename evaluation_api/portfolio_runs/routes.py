"""Portfolio runs: POST /api/v1/portfolio-runs (an upload, 202), GET one (status, progress, summary),
GET its result (CSV or Parquet), GET the caller's own. A run that names a challenger (`challenger_id`,
the risk team's) is a backtest: its policy B is the challenger's policy version, and its swap counts
join the challenger's report (evaluation_api/releases/).

The run executes in the worker process (portfolio/worker.py), never here: this module stores the upload
under PORTFOLIO_RUN_DIR, checks cheaply that it is a table, and queues the run.
"""

from __future__ import annotations

import functools
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Query, Request, Response, status
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from pydantic import BaseModel
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from decisioning.policy import PolicyError, load_policy
from evaluation_api.audit import trail as audit
from evaluation_api.config import Settings
from evaluation_api.database import as_utc
from evaluation_api.deps import EngineDep, SettingsDep
from evaluation_api.errors import (
    EvaluationError,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
)
from evaluation_api.evaluations.schemas import ErrorBody
from evaluation_api.identity.access import Forbidden, PrincipalDep, audit_context
from evaluation_api.identity.roles import Principal, Role
from evaluation_api.portfolio_runs import store as runs
from evaluation_api.releases import registry as releases

router = APIRouter(prefix="/api/v1/portfolio-runs", tags=["portfolio-runs"])

MAX_POLICY_BYTES = 1024 * 1024
COPY_CHUNK = 1024 * 1024


class RunNotFound(NotFound):
    message = "Execução de carteira não encontrada."


class RunNotFinished(EvaluationError):
    status_code = 409
    code = "run_not_finished"
    message = "O resultado ainda não está pronto: consulte o status da execução."


class RunFilesRemoved(EvaluationError):
    status_code = 410
    code = "run_files_removed"
    message = "Os arquivos desta execução foram removidos após o prazo de retenção."


class LengthRequired(EvaluationError):
    status_code = 411
    code = "length_required"
    message = "Envie o arquivo com o cabeçalho Content-Length."


class QueueUnavailable(ServiceUnavailable):
    code = "queue_unavailable"
    message = "Não foi possível enfileirar a execução agora. Tente novamente em instantes."


def max_body_bytes(settings: Settings) -> int:
    """The largest upload request: the file, the candidate policy, and the multipart framing."""
    return settings.portfolio_max_upload_bytes + MAX_POLICY_BYTES + 64 * 1024


class ResultLinks(BaseModel):
    csv: str
    parquet: str


class PortfolioRunPublic(BaseModel):
    id: str
    status: runs.Status
    rows_done: int
    rows_total: int | None
    file_name: str
    candidate_policy: bool
    challenger_id: int | None
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    summary: dict[str, Any] | None
    error: str | None
    result: ResultLinks | None


class PortfolioRunPage(BaseModel):
    items: list[PortfolioRunPublic]
    limit: int
    offset: int


def _public(row: runs.PortfolioRunRow) -> PortfolioRunPublic:
    created_at = as_utc(row.created_at)
    assert created_at is not None
    done = row.status == "succeeded" and row.input_path != ""
    base = f"{router.prefix}/{row.id}/result"
    return PortfolioRunPublic(
        id=row.id,
        status=row.status,
        rows_done=row.rows_done,
        rows_total=row.rows_total,
        file_name=row.file_name,
        candidate_policy=row.candidate_path is not None,
        challenger_id=row.challenger_id,
        created_by=row.created_by,
        created_at=created_at,
        started_at=as_utc(row.started_at),
        finished_at=as_utc(row.finished_at),
        summary=row.summary,
        error=row.error,
        result=ResultLinks(csv=f"{base}?format=csv", parquet=f"{base}?format=parquet") if done else None,
    )


def _may_read(principal: Principal, row: runs.PortfolioRunRow) -> bool:
    """Per run: its creator, and auditors (who read every record)."""
    return row.created_by == principal.subject or principal.has(Role.AUDITOR)


async def _readable(engine: Engine, principal: Principal, run_id: str) -> runs.PortfolioRunRow:
    row = await run_in_threadpool(runs.get, engine, run_id)
    if row is None or not _may_read(principal, row):
        raise RunNotFound()  # another analyst's run: do not reveal that it exists
    return row


def _invalid(field: str, rule: str, message: str) -> InvalidInput:
    return InvalidInput([{"field": field, "rule": rule, "message": message}])


BACKTESTERS = (Role.RISK, Role.ADMIN)


def _challenger_id(value: object) -> int | None:
    """The form's `challenger_id`: absent or empty, none; else a positive integer."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str) or not value.strip().isdigit() or int(value) < 1:
        raise _invalid("challenger_id", "integer", "Informe em `challenger_id` o número de um desafiante.")
    return int(value)


def _check_challenger(engine: Engine, challenger_id: int) -> None:
    """A backtest names a challenger that runs and has a policy of its own: the worker decides with its
    policy version and with the worker's model, so a challenger model is for the shadow only."""
    found = releases.challenger_policy(engine, challenger_id)
    if found is None:
        raise _invalid("challenger_id", "exists", f"O desafiante {challenger_id} não existe.")
    if not found.active:
        raise _invalid("challenger_id", "active", f"O desafiante {challenger_id} já foi encerrado.")
    if found.text is None or found.model_version_id is not None:
        raise _invalid(
            "challenger_id",
            "policy_only",
            f"O desafiante {challenger_id} inclui uma versão de modelo: o backtest compara apenas políticas "
            "(um modelo desafiante é avaliado na sombra).",
        )


def _copy(upload: UploadFile, target: Path, limit: int) -> int:
    """Copy the (spooled) upload to `target` in chunks; never the whole file in memory."""
    upload.file.seek(0)
    written = 0
    with target.open("wb") as out:
        while chunk := upload.file.read(COPY_CHUNK):
            written += len(chunk)
            if written > limit:
                raise PayloadTooLarge(limit)
            out.write(chunk)
    return written


UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "CSV with a header naming the five figures (BALANCE... or balance...), "
                            "an optional CUST_ID/customer_id; or a Parquet file",
                        },
                        "candidate_policy": {
                            "type": "string",
                            "format": "binary",
                            "description": "A candidate policy (YAML, the format of policy.yaml) to compare with",
                        },
                        "challenger_id": {
                            "type": "integer",
                            "description": "A backtest: the running challenger whose policy version to compare "
                            "with (risk, admin; not with candidate_policy)",
                        },
                    },
                }
            }
        },
    }
}


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=PortfolioRunPublic,
    openapi_extra=UPLOAD_BODY,
    responses={
        411: {"model": ErrorBody, "description": "No Content-Length"},
        413: {"model": ErrorBody, "description": "Larger than PORTFOLIO_MAX_UPLOAD_BYTES"},
        403: {"model": ErrorBody, "description": "`challenger_id` by other than risk or admin, or none by them"},
        422: {
            "model": ErrorBody,
            "description": "`file` is not a table with the five figures, the policy is refused, or `challenger_id` "
            "names no running policy challenger or comes with `candidate_policy`",
        },
        503: {"model": ErrorBody, "description": "The database or the queue is unavailable (Retry-After)"},
    },
)
async def create_run(
    request: Request, principal: PrincipalDep, engine: EngineDep, settings: SettingsDep, response: Response
) -> PortfolioRunPublic:
    """Upload a portfolio (multipart: `file`, optional `candidate_policy` or `challenger_id`); the run is
    queued (202). Analysts run portfolios; the risk team and admins backtest a challenger (`challenger_id`).

    The form is read here, after the access rules (an anonymous upload is refused before its body is
    read), and only up to PORTFOLIO_MAX_UPLOAD_BYTES."""
    length = request.headers.get("content-length")
    if length is None:
        raise LengthRequired()
    if not length.isdigit() or int(length) > max_body_bytes(settings):
        raise PayloadTooLarge(max_body_bytes(settings))
    async with request.form(max_files=2, max_fields=4) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise _invalid("file", "required", "Envie o arquivo da carteira no campo `file`.")
        try:
            kind = runs.input_kind(await upload.read(runs.HEADER_BYTES))
        except runs.NotATable as exc:
            raise _invalid("file", "table", str(exc)) from None
        candidate = form.get("candidate_policy")
        if isinstance(candidate, str):
            if candidate.strip():
                raise _invalid("candidate_policy", "file", "Envie a política candidata como arquivo YAML.")
            candidate = None
        elif isinstance(candidate, UploadFile) and not candidate.filename and not candidate.size:
            candidate = None  # a form's empty file input
        challenger_id = _challenger_id(form.get("challenger_id"))
        if challenger_id is not None and candidate is not None:
            both = "Envie `candidate_policy` ou `challenger_id`, não os dois: cada um é a política B da execução."
            raise InvalidInput(
                [
                    {"field": "candidate_policy", "rule": "exclusive", "message": both},
                    {"field": "challenger_id", "rule": "exclusive", "message": both},
                ]
            )
        if challenger_id is not None and not principal.has(*BACKTESTERS):
            raise Forbidden("Só a equipe de risco (ou um administrador) faz backtest de um desafiante (challenger_id).")
        if challenger_id is None and not principal.has(Role.ANALYST):
            raise Forbidden("Execuções de carteira são de analistas; a equipe de risco informa um challenger_id.")
        if challenger_id is not None:
            await run_in_threadpool(_check_challenger, engine, challenger_id)
        run_id = runs.new_id()
        directory = runs.new_run_dir(settings, run_id)
        try:
            input_path = directory / (runs.INPUT_PARQUET if kind == "parquet" else runs.INPUT_CSV)
            await run_in_threadpool(_copy, upload, input_path, settings.portfolio_max_upload_bytes)
            candidate_path = None
            if isinstance(candidate, UploadFile):
                candidate_path = directory / runs.CANDIDATE
                await run_in_threadpool(_copy, candidate, candidate_path, MAX_POLICY_BYTES)
                try:
                    # Named as the analyst named it: the server's paths are not theirs to see.
                    await run_in_threadpool(
                        functools.partial(load_policy, candidate_path, source=candidate.filename or "política")
                    )
                except PolicyError as exc:
                    raise _invalid("candidate_policy", "policy", f"Política candidata recusada: {exc}") from None
            event = audit.event(
                audit_context(request, principal),
                "portfolio_run.create",
                target_type="portfolio_run",
                target_id=run_id,
                details={
                    "file_name": (upload.filename or "")[:255],
                    "candidate_policy": candidate_path is not None,
                    "challenger_id": challenger_id,
                },
            )
            await run_in_threadpool(
                runs.create,
                engine,
                run_id=run_id,
                created_by=principal.subject,
                file_name=upload.filename or input_path.name,
                input_path=input_path,
                candidate_path=candidate_path,
                challenger_id=challenger_id,
                result_dir=directory,
                events=[event],
            )
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
    try:
        await run_in_threadpool(runs.queue_for(settings.portfolio_run_dir).enqueue, run_id)
    except Exception:
        await run_in_threadpool(runs.fail, engine, run_id, QueueUnavailable.message)
        raise QueueUnavailable() from None
    row = await _readable(engine, principal, run_id)
    response.headers["Location"] = f"{router.prefix}/{run_id}"
    return _public(row)


@router.get("", response_model=PortfolioRunPage)
async def list_runs(
    principal: PrincipalDep,
    engine: EngineDep,
    limit: int = Query(20, ge=1, le=200),
    offset: int = Query(0, ge=0),
) -> PortfolioRunPage:
    """The caller's own runs, newest first."""
    rows = await run_in_threadpool(runs.list_runs, engine, created_by=principal.subject, limit=limit, offset=offset)
    return PortfolioRunPage(items=[_public(r) for r in rows], limit=limit, offset=offset)


RunId = PathParam(min_length=1, max_length=36)


@router.get("/{run_id}", response_model=PortfolioRunPublic, responses={404: {"model": ErrorBody}})
async def read_run(principal: PrincipalDep, engine: EngineDep, run_id: str = RunId) -> PortfolioRunPublic:
    """Status (`queued`, `running`, `succeeded`, `failed`), progress, and the summary or the failure's reason."""
    return _public(await _readable(engine, principal, run_id))


MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}


@router.get(
    "/{run_id}/result",
    response_class=FileResponse,
    responses={
        200: {"content": {MEDIA_TYPES["csv"]: {}, MEDIA_TYPES["parquet"]: {}}, "description": "The decisions"},
        404: {"model": ErrorBody},
        409: {"model": ErrorBody, "description": "The run has not succeeded"},
        410: {"model": ErrorBody, "description": "Removed after the retention period"},
    },
)
async def download_result(
    request: Request,
    principal: PrincipalDep,
    engine: EngineDep,
    run_id: str = RunId,
    format: Literal["csv", "parquet"] = Query("csv", description="csv (default) or parquet"),
) -> FileResponse:
    """The output, one row per input row; every download is an audit event (`portfolio_run.download`)."""
    row = await _readable(engine, principal, run_id)
    if row.status != "succeeded":
        raise RunNotFinished()
    path = Path(row.result_dir) / (runs.RESULT_PARQUET if format == "parquet" else runs.RESULT_CSV)
    if row.input_path == "" or not path.is_file():
        raise RunFilesRemoved()
    event = audit.event(
        audit_context(request, principal),
        "portfolio_run.download",
        target_type="portfolio_run",
        target_id=run_id,
        details={"format": format},
    )
    await run_in_threadpool(audit.record, engine, event)
    return FileResponse(path, media_type=MEDIA_TYPES[format], filename=f"carteira-{run_id}.{format}")
