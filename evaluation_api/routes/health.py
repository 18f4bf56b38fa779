"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from evaluation_api.db import check_writable

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up (liveness): never depends on anything else."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Ready to evaluate: the model service answers and the database takes a write. 503 otherwise."""
    evaluator = request.app.state.evaluator
    checks = {"model_service": "ok", "database": "ok", "circuit": evaluator.model.circuit_state()}
    if not await evaluator.model.is_ready():
        checks["model_service"] = "unavailable"
    try:
        await run_in_threadpool(check_writable, evaluator.engine)
    except SQLAlchemyError as exc:
        checks["database"] = f"unavailable ({type(exc).__name__})"
    ready = checks["model_service"] == "ok" and checks["database"] == "ok"
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks}, status_code=200 if ready else 503
    )
