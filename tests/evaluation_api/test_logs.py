"""Logs: JSON lines, each with the request id, and never a customer's name or figures (LGPD)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.utils.evaluations import ModelServiceStub, TestClient, body, json_log_lines

URL = "/api/v1/evaluations"
NAME = "Zélia Quasímodo"
# Figures that fire every hard rule, so that they are formatted into the reasons too.
FIGURES = {"balance": 98765.43, "purchases": 4321.09, "cash_advance": 87654.32, "credit_limit": 1234.56, "payments": 0}
SECRETS = [
    "Zélia",
    "Quasímodo",
    "Zelia",
    "Quasimodo",
    "98765.43",
    "98.765,43",
    "98765,43",
    "4321.09",
    "4.321,09",
    "87654.32",
    "87.654,32",
    "1234.56",
    "1.234,56",
]


def leaked(lines: list[dict[str, Any]]) -> list[str]:
    text = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines)
    return [secret for secret in SECRETS if secret in text]


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_no_log_line_carries_the_customers_name_or_figures(
    start_app: Callable[..., Any], stub: ModelServiceStub, db_path: Path, level: str
) -> None:
    with start_app(log_level=level) as client, json_log_lines() as lines:
        ok = client.post(URL, json=body(name=NAME, **FIGURES), headers={"X-Request-ID": "log-ok"})
        assert ok.status_code == 201
        assert client.get(f"{URL}/{ok.json()['id']}").status_code == 200
        # A validation error, a contract mismatch, a database failure, a model outage (retries, then the circuit).
        assert client.post(URL, json=body(name=NAME + "\n", **{**FIGURES, "credit_limit": -1234.56})).status_code == 422
        stub.default = 400
        assert client.post(URL, json=body(name=NAME, **FIGURES)).status_code >= 500
        stub.default = "ok"
        with sqlite3.connect(db_path) as connection:
            connection.execute("DROP TABLE evaluations")
        assert client.post(URL, json=body(name=NAME, **FIGURES)).status_code == 503
        stub.default = "read_error"
        for _ in range(4):
            assert client.post(URL, json=body(name=NAME, **FIGURES)).status_code == 503
    assert lines, "nothing was logged"
    assert leaked(lines) == [], lines


def test_every_line_is_json_with_the_request_id(client: TestClient, stub: ModelServiceStub) -> None:
    with json_log_lines() as lines:
        assert client.post(URL, json=body(), headers={"X-Request-ID": "log-req-1"}).status_code == 201
        stub.default = "read_error"
        assert client.post(URL, json=body(), headers={"X-Request-ID": "log-req-2"}).status_code == 503
    assert lines
    for line in lines:
        assert {"asctime", "levelname", "name", "message", "request_id"} <= set(line)
    # A successful evaluation is quiet at INFO (its record is the trace; a line per request costs
    # throughput); the failed one logs its retries and its failure, with its own id.
    assert {line["request_id"] for line in lines} == {"log-req-2"}
    failed = [line for line in lines if line["request_id"] == "log-req-2"]
    assert any(line["levelname"] == "WARNING" and "model_unavailable" in line["message"] for line in failed)


def test_a_generated_request_id_is_in_the_log_lines(start_app: Callable[..., Any]) -> None:
    # At DEBUG the model call logs a line (evaluation_api/model_client/client.py; at INFO a success is quiet).
    with start_app(log_level="DEBUG") as client, json_log_lines() as lines:
        response = client.post(URL, json=body())
    assert lines
    assert {line["request_id"] for line in lines} == {response.headers["x-request-id"]}


def test_log_lines_of_a_coalesced_call_carry_its_own_request_ids(
    start_app: Callable[..., Any], stub: ModelServiceStub
) -> None:
    import asyncio

    import httpx

    stub.delay_s = 0.2  # the first call is surely in flight when the others arrive
    # At most 3 customers a call: the 6 evaluations make at least 2 calls.
    with (
        start_app(model_batch_max_in_flight=1, model_batch_max_size=3, log_level="DEBUG") as client,
        json_log_lines() as lines,
    ):
        app = client.app

        async def burst() -> None:
            transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
            headers = {"Authorization": client.headers["Authorization"]}
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=headers) as c:
                responses = await asyncio.gather(
                    *(c.post(URL, json=body(), headers={"X-Request-ID": f"burst-{i}"}) for i in range(6))
                )
            assert all(r.status_code == 201 for r in responses), [(r.status_code, r.text[:200]) for r in responses]

        client.portal.call(burst)  # type: ignore[union-attr]
    assert len(stub.calls) >= 2
    predict_lines = [line for line in lines if "/predict" in line["message"]]
    assert len(predict_lines) == len(stub.calls)
    for line, ids in zip(predict_lines, stub.request_ids, strict=True):
        # One of the call's own ids, or all of them comma-joined (as in its X-Request-ID header).
        assert set(line["request_id"].split(",")) <= set(ids.split(",")), (line["request_id"], ids)
