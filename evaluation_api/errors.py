"""The evaluation API's errors, and the one place that turns them into HTTP responses.

EvaluationError
├── InvalidInput          422  a field breaks its rule
├── NotFound              404
├── PayloadTooLarge       413  the body is larger than the route takes
├── Conflict              409  the request clashes with one already made (Retry-After when it may pass)
└── ServiceUnavailable    503  with Retry-After
    ├── ModelUnavailable       the model service is down, slow or overloaded
    ├── DatabaseUnavailable    the decision was not recorded (so not made)
    │   └── DatabaseBusy           too many records wait for the database: refused before queueing
    └── RecordUnconfirmed      the record's commit outlived its deadline: it may or may not be
                               recorded, and the answer says so (with the evaluation's id to look up)

A database error that a route does not handle itself (SQLAlchemyError) is a DatabaseUnavailable
here, in one place, rather than in a try block in every route.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from evaluation_api.validation_messages import field_errors

logger = logging.getLogger(__name__)


class EvaluationError(Exception):
    status_code = 500
    code = "internal_error"
    message = "Erro interno. A equipe foi avisada; tente novamente."

    # Seconds after which the same request may succeed: sent as Retry-After when set.
    retry_after_s: float | None = None

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message}


class InvalidInput(EvaluationError):
    status_code = 422
    code = "validation_error"
    message = "Alguns campos são inválidos."

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__()
        self.errors = errors

    def body(self) -> dict[str, Any]:
        return {**super().body(), "errors": self.errors}


class NotFound(EvaluationError):
    status_code = 404
    code = "not_found"
    message = "Avaliação não encontrada."


class Conflict(EvaluationError):
    status_code = 409

    def __init__(self, message: str | None = None, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ServiceUnavailable(EvaluationError):
    status_code = 503

    def __init__(self, message: str | None = None, *, retry_after_s: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ModelUnavailable(ServiceUnavailable):
    code = "model_unavailable"
    message = "O serviço de análise está indisponível no momento. Tente novamente em alguns segundos."


class DatabaseUnavailable(ServiceUnavailable):
    code = "database_unavailable"
    message = "Não foi possível registrar a decisão; nada foi decidido. Tente novamente em alguns segundos."


# What a route's unhandled database error says: true of a read and of a write alike.
DATABASE_DOWN = "O banco de dados não respondeu; o pedido não foi concluído. Tente novamente em alguns segundos."


class DatabaseBusy(DatabaseUnavailable):
    code = "database_busy"
    message = "Muitas avaliações ao mesmo tempo; nada foi decidido. Tente novamente em alguns segundos."


class RecordUnconfirmed(ServiceUnavailable):
    code = "record_unconfirmed"
    message = (
        "Não foi possível confirmar a tempo o registro da decisão: ela pode ter sido registrada. "
        "Consulte a avaliação pelo seu identificador antes de repetir o pedido."
    )

    def __init__(self, evaluation_id: str, *, retry_after_s: float = 5.0) -> None:
        super().__init__(retry_after_s=retry_after_s)
        self.evaluation_id = evaluation_id

    def body(self) -> dict[str, Any]:
        return {**super().body(), "id": self.evaluation_id}


class PayloadTooLarge(EvaluationError):
    status_code = 413
    code = "payload_too_large"

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(f"O corpo da requisição passa do limite de {limit_bytes} bytes.")


def error_response(exc: EvaluationError, headers: dict[str, str] | None = None) -> JSONResponse:
    """The HTTP response of an error: its status, its body, and Retry-After when it says when to retry."""
    headers = dict(headers or {})
    if exc.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(EvaluationError)
    async def _evaluation_error(request: Request, exc: EvaluationError) -> JSONResponse:
        if isinstance(exc, ServiceUnavailable):
            logger.warning("evaluation failed: %s", exc.code)
        return error_response(exc)

    @app.exception_handler(SQLAlchemyError)
    async def _database_error(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        logger.warning("database unavailable: %s", type(exc).__name__)
        return error_response(DatabaseUnavailable(DATABASE_DOWN))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(InvalidInput(field_errors(exc.errors())).body(), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI: the body could not be parsed (json.loads raised, not JSONDecodeError)
            invalid = InvalidInput(field_errors([{"type": "json_invalid", "loc": ("body",)}]))
            return JSONResponse(invalid.body(), status_code=422)
        codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        messages = {404: "Recurso não encontrado.", 405: "Método não permitido."}
        return JSONResponse(
            {
                "error": codes.get(exc.status_code, "http_error"),
                "message": messages.get(exc.status_code, str(exc.detail)),
            },
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error")
        return JSONResponse(EvaluationError().body(), status_code=500)
