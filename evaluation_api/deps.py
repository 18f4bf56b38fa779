"""Dependency aliases for the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from evaluation_api.evaluate import Evaluator
from evaluation_api.observability import request_id_var


def get_evaluator(request: Request) -> Evaluator:
    evaluator: Evaluator = request.app.state.evaluator
    return evaluator


def get_request_id() -> str:
    return request_id_var.get()


EvaluatorDep = Annotated[Evaluator, Depends(get_evaluator)]
RequestIdDep = Annotated[str, Depends(get_request_id)]
