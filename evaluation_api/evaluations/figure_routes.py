"""GET /api/v1/figures: the customer's figures and their limits, for clients that check before sending."""

from __future__ import annotations

from functools import cache

from fastapi import APIRouter

from evaluation_api.evaluations.schemas import FigurePublic, figure_limits

router = APIRouter(prefix="/api/v1/figures", tags=["figures"])

_limits = cache(figure_limits)


@router.get("", response_model=list[FigurePublic])
async def list_figures() -> list[FigurePublic]:
    """The five figures an evaluation takes, in order, each with its pt-BR label and its limits (the
    same rules the API enforces; the form reads them from here). Public: no customer data."""
    return _limits()
