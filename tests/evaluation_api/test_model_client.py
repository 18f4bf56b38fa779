"""The model client on its real HTTP stack (aiohttp), against small servers on 127.0.0.1: an answer, a
refused connection, a peer that never answers, and a 503 with Retry-After. The other model-client
tests (resilience, overload, concurrency) run through create_app against the model service stub, on
the same client and real sockets (tests/utils/evaluations.ModelServiceStub)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import orjson
import pytest

from contract import FEATURE_NAMES
from devtools.servers import free_port
from evaluation_api.errors import ModelUnavailable
from evaluation_api.model_client.client import ModelClient
from tests.utils.evaluations import SEGMENT_CUSTOMERS

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
CUSTOMER = SEGMENT_CUSTOMERS["least_active"]


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[str]:
    """A server on a free port for the block; its connections are closed at the end (a handler may
    still be waiting: the server never answers, on purpose)."""
    tasks: set[asyncio.Task[None]] = set()
    writers: list[asyncio.StreamWriter] = []

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        await handler(reader, writer)

    server = await asyncio.start_server(connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for writer in writers:
            writer.close()
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    line, *fields = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (f.partition(":") for f in fields if f)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return line.encode(), headers, body


def http_response(status: str, body: bytes, **headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Content-Type: application/json"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def client(url: str, **overrides: float) -> ModelClient:
    settings: dict[str, float] = {"connect_timeout_s": 0.5, "read_timeout_s": 0.3, "retry_budget_s": 2.0}
    settings.update(overrides)
    return ModelClient(base_url=url, breaker_threshold=10, **settings)  # type: ignore[arg-type]


async def test_a_prediction_over_aiohttp() -> None:
    seen: list[tuple[bytes, dict[str, str], bytes]] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while not reader.at_eof():
            try:
                request = await read_request(reader)
            except asyncio.IncompleteReadError:
                break
            seen.append(request)
            prediction = [{"cluster": 3, "segment": "least_active", "distances": [1.0, 2.0, 0.5, 3.0, 4.0]}]
            writer.write(http_response("200 OK", orjson.dumps(prediction), X_Model_Version="abc123"))
            await writer.drain()
        writer.close()

    async with serving(answer) as url:
        model = client(url)
        try:
            first = await model.predict(CUSTOMER, request_id="req-1")
            second = await model.predict(CUSTOMER, request_id="req-2")
        finally:
            await model.aclose()
    assert first.segment == "least_active" and first.cluster == 3
    assert first.distances == [1.0, 2.0, 0.5, 3.0, 4.0]
    assert first.model_version == "abc123"  # the header, whatever its case
    assert second == first
    line, headers, body = seen[0]
    assert line == b"POST /predict_batch HTTP/1.1"
    assert headers["x-request-id"] == "req-1" and headers["content-type"] == "application/json"
    assert orjson.loads(body) == {"customers": [{name: CUSTOMER[name] for name in FEATURE_NAMES}]}
    assert len(seen) == 2  # the second call reused the connection: the same handler saw both


async def test_a_refused_connection_is_model_unavailable_after_the_retries() -> None:
    model = client(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    try:
        with pytest.raises(ModelUnavailable) as raised:
            await model.predict(CUSTOMER, request_id="refused")
    finally:
        await model.aclose()
    assert raised.value.retry_after_s is not None and raised.value.retry_after_s >= 1


async def test_a_peer_that_never_answers_times_out_and_each_attempt_is_made() -> None:
    attempts = 0

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal attempts
        await read_request(reader)
        attempts += 1
        await asyncio.sleep(30)  # never answers; the client's read timeout ends the attempt

    async with serving(silent) as url:
        model = client(url)
        try:
            with pytest.raises(ModelUnavailable):
                await model.predict(CUSTOMER, request_id="silent")
        finally:
            await model.aclose()
    assert attempts == 3  # the first attempt and two retries, each ended by the read timeout


async def test_a_503_with_retry_after_past_the_budget_fails_at_once_and_passes_it_on() -> None:
    calls = 0

    async def shed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal calls
        await read_request(reader)
        calls += 1
        writer.write(http_response("503 Service Unavailable", b'{"error": "overloaded"}', Retry_After="5"))
        await writer.drain()
        writer.close()

    async with serving(shed) as url:
        model = client(url, retry_budget_s=2.0)
        try:
            with pytest.raises(ModelUnavailable) as raised:
                await model.predict(CUSTOMER, request_id="shed")
        finally:
            await model.aclose()
    assert calls == 1  # Retry-After (5 s) is past the budget (2 s): no retry
    assert raised.value.retry_after_s == 5
