"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from evaluation_api.db import check_writable
from evaluation_api.deps import EngineDep, ModelClientDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up (liveness): never depends on anything else."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(model: ModelClientDep, engine: EngineDep) -> JSONResponse:
    """Ready to evaluate: the model service answers and the database takes a write. 503 otherwise."""
    checks = {"model_service": "ok", "database": "ok", "circuit": model.circuit_state()}
    if not await model.is_ready():
        checks["model_service"] = "unavailable"
    try:
        await run_in_threadpool(check_writable, engine)
    except SQLAlchemyError as exc:
        checks["database"] = f"unavailable ({type(exc).__name__})"
    ready = checks["model_service"] == "ok" and checks["database"] == "ok"
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks}, status_code=200 if ready else 503
    )
