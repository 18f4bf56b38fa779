"""Liveness and readiness."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from evaluation_api.deps import EngineDep, ModelClientDep, RecordWriterDep
from evaluation_api.records.table import check_writable

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up (liveness): never depends on anything else."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(model: ModelClientDep, engine: EngineDep, writer: RecordWriterDep) -> JSONResponse:
    """Ready to evaluate: the model service answers, the database takes a write, and the record writer
    is alive and not stalled (no record waiting for its commit for RECORD_COMMIT_TIMEOUT_S or more).
    503 otherwise."""
    checks = {"model_service": "ok", "database": "ok", "circuit": model.circuit_state()}
    if not await model.is_ready():
        checks["model_service"] = "unavailable"
    try:
        await run_in_threadpool(check_writable, engine)
    except SQLAlchemyError as exc:
        checks["database"] = f"unavailable ({type(exc).__name__})"
    writer.ensure_running()  # a writer thread that died is replaced here too, and counted
    health = writer.health()
    checks["record_writer"] = "ok" if health.alive and not health.stalled else "stalled" if health.alive else "dead"
    ready = all(checks[name] == "ok" for name in ("model_service", "database", "record_writer"))
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks, "record_writer": asdict(health)},
        status_code=200 if ready else 503,
    )
