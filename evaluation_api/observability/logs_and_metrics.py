"""Request ids, structured logs and metrics.

Every request gets an id (X-Request-ID from the caller when it is sane, else a new one); it is sent
to the model service, stored in the decision record, returned in the response header and added to
every log line. Logs are JSON lines and carry no customer name or figures.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any, TextIO

from prometheus_client import CollectorRegistry, Counter, Histogram
from pythonjsonlogger.json import JsonFormatter

from evaluation_api.ids import random_uuid

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def new_request_id() -> str:
    return random_uuid().hex


class RequestIdMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware: it costs a task per request on the hot path)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        request_id = incoming if _SANE_ID.match(incoming) else new_request_id()
        token = request_id_var.set(request_id)
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


class HttpMetricsMiddleware:
    """`http_requests_total` and `http_request_duration_seconds`, by handler (the route's template),
    method and status class ("2xx"): the names and labels of prometheus-fastapi-instrumentator, which
    the alert rules and the dashboard read (deploy/monitoring/). Pure ASGI, and the handler is the
    route FastAPI matched (scope["route"], read once the app has answered): the instrumentator matched
    every route a second time on each request, about a tenth of an evaluation's CPU
    (docs/ARCHITECTURE.md, "Where the CPU went")."""

    def __init__(
        self, app: Any, *, registry: CollectorRegistry, buckets: Iterable[float], excluded: Iterable[str] = ()
    ) -> None:
        self.app = app
        self.excluded = frozenset(excluded)
        labels = ["handler", "method", "status"]
        self.requests = Counter(
            "http_requests_total", "Total number of requests by method, status and handler.", labels, registry=registry
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Duration of HTTP requests in seconds",
            labels,
            buckets=tuple(buckets),
            registry=registry,
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers if the app raises before it starts a response

        async def send_with_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            handler = getattr(route, "path", None) or "none"  # "none": no route matched (a 404, a file)
            if handler not in self.excluded:
                labels = (handler, scope["method"], f"{status // 100}xx")
                self.requests.labels(*labels).inc()
                self.latency.labels(*labels).observe(time.perf_counter() - started)


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:  # a thread of ours may name its requests itself
            record.request_id = request_id_var.get()
        return True


class ApiLogHandler(logging.StreamHandler[TextIO]):
    """Our handler on the root logger: its own class, so that configuring again replaces it."""


def configure_logging(level: str) -> None:
    """JSON lines on stderr, each with its request id. Called by create_app, never at import."""
    handler = ApiLogHandler()
    handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s"))
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not isinstance(h, ApiLogHandler)]
    root.addHandler(handler)
    root.setLevel(level.upper())
    # httpx logs every call at INFO: one line per model call is noise at these rates, and costs.
    # Shown at DEBUG, where each model call's line (with its request ids) is what one wants.
    logging.getLogger("httpx").setLevel(logging.DEBUG if root.level <= logging.DEBUG else logging.WARNING)
    # uvicorn's own loggers write plain text through their own handlers: send them through ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        # `--no-access-log` leaves uvicorn.access without handlers and not propagating, and uvicorn
        # logs each request only if that logger has a handler somewhere: keep it off, as asked.
        if name == "uvicorn.access" and not uvicorn_logger.handlers and not uvicorn_logger.propagate:
            continue
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True


class Metrics:
    """The evaluation API's own metrics, on the app's registry (one per app: tests make many apps)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry  # for the metrics of other parts of the app (releases/live.py)
        self.decisions = Counter(
            "evaluation_decisions_total",
            "Decisions made, by decision and segment",
            ["decision", "segment"],
            registry=registry,
        )
        self.failures = Counter(
            "evaluation_failures_total", "Evaluations that failed, by error code", ["error"], registry=registry
        )
        self.model_latency = Histogram(
            "evaluation_model_call_seconds",
            "Time waiting for the model service per evaluation",
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
