"""The API limits request bodies itself (evaluation_api/body_limit.py): 413 in the error shape, whether
the body announces its size (Content-Length) or streams without it (chunked), per path prefix."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from evaluation_api.body_limit import BodySizeLimit
from tests.evaluation_api.test_resilience import record_count
from tests.utils.evaluations import ModelServiceStub, TestClient, body

URL = "/api/v1/evaluations"
LIMIT = 64 * 1024  # the default MAX_BODY_BYTES


def oversized(size: int) -> bytes:
    """A JSON evaluation padded with spaces (valid JSON) to `size` bytes."""
    data = json.dumps(body()).encode()
    return data[:-1] + b" " * (size - len(data)) + b"}"


def chunks(data: bytes, size: int = 4096) -> Iterator[bytes]:
    """A generator body: httpx sends it chunked, with no Content-Length."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def assert_too_large(response: Any) -> None:
    assert response.status_code == 413, response.text
    assert response.json() == {
        "error": "payload_too_large",
        "message": f"O corpo da requisição passa do limite de {LIMIT} bytes.",
    }
    assert response.headers["x-request-id"]


JSON = {"content-type": "application/json"}


@pytest.mark.parametrize("url", [URL, "/avaliar"])
def test_a_body_announced_over_the_limit_is_413(
    client: TestClient, stub: ModelServiceStub, db_path: Path, url: str
) -> None:
    response = client.post(url, content=oversized(LIMIT + 1), headers=JSON)
    assert_too_large(response)
    assert stub.calls == [] and record_count(db_path) == 0


def test_a_chunked_body_without_content_length_is_counted_and_413(
    client: TestClient, stub: ModelServiceStub, db_path: Path
) -> None:
    response = client.post(URL, content=chunks(oversized(LIMIT + 1)), headers=JSON)
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_too_large(response)
    assert stub.calls == [] and record_count(db_path) == 0


def test_a_body_at_the_limit_is_read(client: TestClient) -> None:
    assert client.post(URL, content=oversized(LIMIT), headers=JSON).status_code == 201
    assert client.post(URL, content=chunks(oversized(LIMIT)), headers=JSON).status_code == 201


def test_a_path_prefix_can_have_its_own_limit(start_app: Callable[..., Any]) -> None:
    with start_app(max_body_bytes=LIMIT, max_body_bytes_by_path={URL: 4 * LIMIT}) as client:
        assert client.post(URL, content=oversized(2 * LIMIT), headers=JSON).status_code == 201
        assert client.post(URL, content=chunks(oversized(2 * LIMIT)), headers=JSON).status_code == 201
        assert_too_large(client.post("/avaliar", content=oversized(2 * LIMIT), headers=JSON))


async def test_an_endless_stream_is_cut_off_at_the_limit() -> None:
    """An app that reads everything it is sent, and a client that never stops sending."""
    reads = 0

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"x" * 1024, "more_body": True}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (await receive())["more_body"]:
            pass

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": URL, "headers": [(b"content-type", b"application/json")]}
    async with asyncio.timeout(5):
        await BodySizeLimit(app, max_bytes=10 * 1024)(scope, receive, send)
    assert reads == 11  # the 11th KiB passed the limit: nothing more was read
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["error"] == "payload_too_large"
