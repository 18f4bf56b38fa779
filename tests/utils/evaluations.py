"""Factories for the evaluation API's tests: request bodies, customers of each segment, a model service
stub on a real socket that answers with the committed pipeline, and the JSON log lines of an app.

Nothing here starts a process or opens a connection at import.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx

from contract import SEGMENTS
from evaluation_api.config import Settings
from evaluation_api.observability.logs_and_metrics import ApiLogHandler
from models import CARD_PATH, FEATURES, MODEL_NAME, PICKLE_PATH

with warnings.catch_warnings():
    # Starlette 1.x warns at import that its TestClient wants `httpx2`, which the pinned environment
    # does not have (requirements/). Silenced here, at the one import, not for the whole suite.
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette.testclient` is deprecated")
    from fastapi.testclient import TestClient

__all__ = [
    "SEGMENT_CUSTOMERS",
    "ModelServiceStub",
    "TestClient",
    "body",
    "json_log_lines",
    "make_settings",
    "remove_app_log_handlers",
    "until",
]

ROOT = Path(__file__).resolve().parents[2]
MODEL_VERSION = "0f6b8eb0b94f0589"

# One customer per segment (the medians of each segment's members, tests/utils/data.py PROFILES), chosen
# so that no hard rule fires: the decision is the segment's alone.
SEGMENT_CUSTOMERS: dict[str, dict[str, float]] = {
    key: dict(zip(FEATURES, figures, strict=True))
    for key, figures in {
        # balance, purchases, cash_advance, credit_limit, payments
        "high_limit_revolvers": (2140, 690, 1470, 4975, 1600),
        "cash_advance_users": (1540, 1, 1270, 3000, 810),
        "least_active": (50, 87, 20, 3000, 1),
        "credit_purchasers_good_payers": (640, 1435, 1, 6000, 1550),
        "low_limit_light_users": (73, 317, 1, 1500, 400),
    }.items()
}


def body(**overrides: Any) -> dict[str, Any]:
    """A valid EvaluationCreate body (a credit purchaser, approved); `overrides` replace or add fields,
    and a field given as `...` (Ellipsis) is removed."""
    data: dict[str, Any] = {"name": "Maria da Silva", **SEGMENT_CUSTOMERS["credit_purchasers_good_payers"]}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not ...}


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for an app on a fresh SQLite file in tmp_path, serving the real frontend/, with a short
    breaker TTL (1 s): a test can wait for the circuit to close, and the few calls it makes while the
    circuit is open surely fit in it, even on a busy machine; and a generous deadline for the record."""
    values: dict[str, Any] = {
        "model_service_url": "http://model-service.test:3000",
        "database_url": f"sqlite:///{tmp_path / 'evaluations.db'}",
        "frontend_dir": ROOT / "frontend",
        "breaker_ttl_s": 1.0,
        "auth_signing_key_file": tmp_path / "signing.key",
        # This machine is shared and noisy: a test about something else must never meet the record's
        # deadline (the tests of that deadline set their own, with a database that really stalls).
        "record_commit_timeout_s": 10.0,
        "database_statement_timeout_s": 5.0,
        "database_lock_timeout_s": 2.0,
        "data_keys_path": tmp_path / "data-keys.json",
        "portfolio_run_dir": tmp_path / "portfolio-runs",
    }
    values.update(overrides)
    return Settings(**values)


@lru_cache(maxsize=1)
def committed_pipeline() -> Any:
    import joblib  # only the tests that answer /predict need scikit-learn

    return joblib.load(PICKLE_PATH)


def predict(customers: list[dict[str, float]]) -> list[dict[str, Any]]:
    """What the model service's /predict answers: the committed pipeline's nearest centroid, by segment id."""
    import numpy as np

    if not customers:
        return []
    X = np.array([[c[f] for f in FEATURES] for c in customers], dtype=np.float64)
    distances = committed_pipeline().transform(X)
    return [
        {"cluster": int(c), "segment": SEGMENTS[int(c)].key, "distances": [round(float(x), 6) for x in row]}
        for c, row in zip(distances.argmin(axis=1), distances.tolist(), strict=True)
    ]


@lru_cache(maxsize=1)
def committed_geometry() -> dict[str, Any]:
    """The committed pipeline's fitted parameters, as the model service's /metadata gives them."""
    from models.distances import PipelineDistances

    return PipelineDistances(committed_pipeline()).geometry()


@lru_cache(maxsize=1)
def _committed_card() -> dict[str, Any]:
    card: dict[str, Any] = json.loads(CARD_PATH.read_text(encoding="utf-8"))
    return card


def shifted(predictions: list[dict[str, Any]], shift: int) -> list[dict[str, Any]]:
    """Another model's answers: the committed pipeline with its centroids rotated by `shift`, so that a
    customer nearest centroid c is in segment (c + shift) mod 5 (a model that disagrees on every customer,
    in a way a test can compute)."""
    n = len(SEGMENTS)
    return [
        {
            "cluster": (p["cluster"] + shift) % n,
            "segment": SEGMENTS[(p["cluster"] + shift) % n].key,
            "distances": [p["distances"][(j - shift) % n] for j in range(n)],
        }
        for p in predictions
    ]


def metadata(version: str = MODEL_VERSION, *, shift: int = 0) -> dict[str, Any]:
    """What the model service's GET /metadata answers (service.py), with the committed card (and, with a
    `shift`, the rotated centroids of `shifted`'s model)."""
    card = _committed_card()
    geometry = committed_geometry()
    if shift:
        centres = geometry["centres"]
        geometry = {**geometry, "centres": [centres[(j - shift) % len(centres)] for j in range(len(centres))]}
    return {
        "model": {"name": MODEL_NAME, "version": version, "tag": f"{MODEL_NAME}:{version}"},
        "features": list(FEATURES),
        "segments": [
            {"id": s["id"], "key": s["key"], "description": s["description"], "size_share": s["size_share"]}
            for s in card["segments"]
        ],
        "geometry": geometry,
        "card": card,
    }


# What the stub does with one /predict call: "ok"; "read_error" (the head of an answer, then the
# connection closes); "drop" (the connection closes with no byte of answer: on a kept connection the
# client takes it for one the server closed while idle and sends the request again, once, on a new
# connection); "hang" (no answer; the client's read timeout ends the attempt); an HTTP status to answer
# with (503); or a function of the request returning the response.
Behaviour = str | int | Callable[[httpx.Request], httpx.Response]


class ModelServiceStub:
    """The model service on a real socket (127.0.0.1, a free port), served by its own thread and event
    loop, so that the API's tests run the production HTTP client (evaluation_api/model_client/http1.py)
    with its timeouts, connection reuse and failures. Use it as a context manager (the `stub` fixture
    does); `url` is where it listens, and `settings(...)` points an app's settings at it.

    /predict answers with the committed pipeline (and `X-Model-Version`), after `delay_s`. `script`
    holds the behaviours of the next calls, in order; once it is empty every call does `default`.
    Every /predict request is kept in `calls` (as an httpx.Request: headers and body) even when it fails.
    """

    def __init__(self, *, version: str = MODEL_VERSION, delay_s: float = 0.0, shift: int = 0) -> None:
        self.version = version
        self.shift = shift  # another model (`shifted`): every customer in segment (nearest + shift) mod 5
        self.delay_s = delay_s
        self.default: Behaviour = "ok"
        self.script: deque[Behaviour] = deque()
        self.ready = True
        self.explainable = True  # False: /metadata without the model's parameters (an older model service)
        self.calls: list[httpx.Request] = []
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    def __enter__(self) -> ModelServiceStub:
        started = threading.Event()
        loop = self._loop = asyncio.new_event_loop()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            self._server = loop.run_until_complete(asyncio.start_server(self._connection, "127.0.0.1", 0))
            self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
            started.set()
            loop.run_forever()

        self._thread = threading.Thread(target=serve, name="model-service-stub", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the model service stub did not start")
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._loop is not None and self._thread is not None and self._server is not None
        server = self._server

        async def shut_down() -> None:
            server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await server.wait_closed()

        asyncio.run_coroutine_threadsafe(shut_down(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def settings(self, settings: Settings) -> Settings:
        """`settings` with the model service at this stub."""
        return settings.model_copy(update={"model_service_url": self.url})

    @property
    def request_ids(self) -> list[str]:
        """The X-Request-ID header of each /predict call (comma-joined when calls were coalesced)."""
        return [call.headers.get("x-request-id", "") for call in self.calls]

    @property
    def customers(self) -> list[list[dict[str, float]]]:
        """The customers of each /predict call."""
        return [json.loads(call.content)["customers"] for call in self.calls]

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                try:
                    request = await self._read(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return  # the client closed it
                answer = await self._answer(request)
                if answer is None:
                    return  # close without answering
                writer.write(answer)
                await writer.drain()
                if answer.endswith(_CUT_SHORT):
                    return  # close in the middle of the answer
        except ConnectionError:
            return
        finally:
            self._connections.discard(task)
            writer.transport.abort()  # at once, without waiting for the client to read

    async def _read(self, reader: asyncio.StreamReader) -> httpx.Request:
        head = await reader.readuntil(b"\r\n\r\n")
        line, *fields = head.decode("latin-1").split("\r\n")
        method, target, _ = line.split(" ", 2)
        headers = [(k.strip(), v.strip()) for k, _, v in (f.partition(":") for f in fields if f)]
        length = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
        content = await reader.readexactly(length)
        return httpx.Request(method, f"{self.url}{target}", headers=headers, content=content)

    async def _answer(self, request: httpx.Request) -> bytes | None:
        """The bytes to send back, or None to close the connection without a byte."""
        if request.url.path in ("/readyz", "/metadata"):
            if not self.ready:
                return None  # a service that is down does not answer
            if request.url.path == "/readyz":
                return _encode(httpx.Response(200, text="ok"))
            answer = metadata(self.version, shift=self.shift)
            if not self.explainable:
                del answer["geometry"]
            return _encode(httpx.Response(200, json=answer))
        if request.url.path not in ("/predict", "/predict_batch"):  # the same contract, batched or not
            return _encode(httpx.Response(404))
        self.calls.append(request)
        behaviour = self.script.popleft() if self.script else self.default
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if behaviour == "ok":
            customers = json.loads(request.content)["customers"]
            answers = shifted(predict(customers), self.shift) if self.shift else predict(customers)
            return _encode(httpx.Response(200, json=answers, headers={"x-model-version": self.version}))
        if behaviour == "drop":
            return None
        if behaviour == "read_error":
            return _CUT_SHORT
        if behaviour == "hang":
            await asyncio.sleep(3600)  # cancelled when the client gives up and closes, or at the end
        if isinstance(behaviour, int):
            return _encode(
                httpx.Response(
                    behaviour, json={"error": "stub", "detail": []}, headers={"x-model-version": self.version}
                )
            )
        if callable(behaviour):
            return _encode(behaviour(request))
        raise AssertionError(f"unknown behaviour {behaviour!r}")


# The start of an answer that never ends: the connection closes after it.
_CUT_SHORT = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n[{"


def _encode(response: httpx.Response) -> bytes:
    """An httpx.Response as HTTP/1.1 bytes, with its exact length (the connection is kept)."""
    content = response.content
    lines = [f"HTTP/1.1 {response.status_code} {response.reason_phrase}"]
    lines += [
        f"{k}: {v}" for k, v in response.headers.items() if k.lower() not in ("content-length", "transfer-encoding")
    ]
    lines.append(f"content-length: {len(content)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + content


def until(check: Callable[[], Any], *, timeout_s: float = 15.0, interval_s: float = 0.05, what: str = "") -> Any:
    """Poll `check` until it returns something truthy (returned); fail after `timeout_s`. For waiting on
    time-based behaviour (a circuit's TTL) without a fixed sleep."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what or check}")
        time.sleep(interval_s)


def _app_handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if isinstance(h, ApiLogHandler)]


@contextmanager
def json_log_lines() -> Iterator[list[dict[str, Any]]]:
    """The JSON lines the running app's log handler writes inside the block, parsed (call it after the
    app started: its lifespan installs the handler). Lines the test's own HTTP client logs are left out."""
    handlers = [h for h in _app_handlers() if isinstance(h, logging.StreamHandler)]
    assert handlers, "the app's JSON log handler is not installed (start the app first)"
    handler = handlers[-1]
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    lines: list[dict[str, Any]] = []
    try:
        yield lines
    finally:
        handler.setStream(previous)  # type: ignore[arg-type]
        for text in buffer.getvalue().splitlines():
            line = json.loads(text)  # every line is JSON, or this fails
            if "http://testserver" not in line.get("message", ""):
                lines.append(line)


def remove_app_log_handlers() -> None:
    """Undo configure_logging: the handler it installs outlives the app (it is the process's)."""
    root = logging.getLogger()
    for handler in _app_handlers():
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)


# The default policy's decision per segment (decisioning/policy.yaml), as the README documents it.
SEGMENT_DECISIONS = {
    "credit_purchasers_good_payers": "approved",
    "low_limit_light_users": "approved",
    "high_limit_revolvers": "review",
    "cash_advance_users": "review",
    "least_active": "denied",
}

# EvaluationPublic's fields, exactly as docs/API.md lists them.
PUBLIC_FIELDS = {
    "id",
    "decision",
    "segment",
    "reasons",
    "explanation",
    "model",
    "policy_version",
    "evaluated_at",
    "request_id",
}
