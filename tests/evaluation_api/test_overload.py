"""Retries never multiply load on an overloaded model service: its Retry-After is honoured, retries are
capped to a share of recent calls (a retry budget), and a half-open circuit lets exactly one trial call
through. The model service is a stub on a real socket (tests/utils/evaluations.ModelServiceStub)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path
from typing import Any

import httpx
import pytest

from evaluation_api.main import create_app
from evaluation_api.model_client.retry_budget import RetryBudget, parse_retry_after
from tests.evaluation_api.test_resilience import assert_unavailable, circuit
from tests.utils.evaluations import ModelServiceStub, TestClient, body, make_settings, until
from tests.utils.identity import analyst_headers

URL = "/api/v1/evaluations"


def shed(retry_after: str | None, times: list[float]) -> Callable[[httpx.Request], httpx.Response]:
    """A 503 as an overloaded model service sends it, noting when it was asked."""

    def answer(request: httpx.Request) -> httpx.Response:
        times.append(time.monotonic())
        headers = {"retry-after": retry_after} if retry_after is not None else {}
        return httpx.Response(503, json={"error": "overloaded"}, headers=headers)

    return answer


# --- Retry-After -------------------------------------------------------------------------------------


def test_a_503_with_retry_after_is_retried_no_sooner(client: TestClient, stub: ModelServiceStub) -> None:
    times: list[float] = []
    stub.script.append(shed("1", times))
    response = client.post(URL, json=body())
    assert response.status_code == 201, response.text
    assert len(stub.calls) == 2
    assert len(times) == 1
    # The retry left no sooner than the service asked (a lower bound, not a duration).
    assert time.monotonic() - times[0] >= 1.0


def test_a_retry_after_beyond_the_deadline_fails_at_once_and_is_passed_on(
    client: TestClient, stub: ModelServiceStub
) -> None:
    times: list[float] = []
    stub.default = shed("30", times)
    response = client.post(URL, json=body())
    assert_unavailable(response)
    assert response.headers["retry-after"] == "30"
    assert len(stub.calls) == 1  # no retry: the service will not be ready within this evaluation's deadline


def test_retry_after_as_an_http_date() -> None:
    now = time.time()
    assert parse_retry_after(formatdate(now + 20, usegmt=True), now=now) == pytest.approx(20, abs=1)
    assert parse_retry_after(formatdate(now - 20, usegmt=True), now=now) == 0.0
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None


# --- the retry budget --------------------------------------------------------------------------------


def test_the_budget_allows_retries_up_to_its_share_of_calls() -> None:
    budget = RetryBudget(ratio=0.2, burst=2)
    assert [budget.try_spend() for _ in range(3)] == [True, True, False]  # the reserve, then nothing
    for _ in range(4):
        budget.record_call()
    assert budget.try_spend() is False  # 4 calls x 0.2 = 0.8 of a retry
    budget.record_call()
    assert budget.try_spend() is True
    for _ in range(100):
        budget.record_call()
    assert budget.tokens == 2  # a quiet spell saves at most the reserve


def test_when_every_call_fails_retries_stay_a_small_share_of_calls(
    start_app: Callable[..., Any], stub: ModelServiceStub
) -> None:
    stub.default = 503
    evaluations, ratio, burst = 30, 0.1, 2
    # A breaker that never opens here: what caps the load is the budget alone.
    with start_app(model_retry_ratio=ratio, model_retry_burst=burst, breaker_threshold=1000) as client:
        for _ in range(evaluations):
            assert_unavailable(client.post(URL, json=body()))
    retries = len(stub.calls) - evaluations
    assert 0 < retries <= burst + ratio * evaluations  # 3 attempts each would have been 60 retries


# --- the half-open circuit ---------------------------------------------------------------------------


async def test_a_half_open_circuit_lets_exactly_one_trial_call_through(tmp_path: Path, stub: ModelServiceStub) -> None:
    n = 12
    # One customer per call: n calls, not one coalesced call.
    settings = make_settings(
        tmp_path,
        breaker_threshold=1,
        breaker_ttl_s=0.3,
        model_retry_attempts=1,
        model_batch_max_in_flight=n,
        model_batch_max_size=1,
    )
    app = create_app(stub.settings(settings))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=analyst_headers(app)) as client,
    ):
        stub.script.append("read_error")
        assert (await client.post(URL, json=body())).status_code == 503
        model = app.state.evaluator.model
        assert model.circuit_state() == "opened"
        await asyncio.sleep(settings.breaker_ttl_s + 0.05)  # the TTL passes: the next call is the trial

        stub.delay_s = 0.3  # the trial call takes a moment: everyone else arrives while it is in flight
        calls = len(stub.calls)
        responses = await asyncio.gather(*(client.post(URL, json=body(name=f"Cliente {i}")) for i in range(n)))

        assert len(stub.calls) == calls + 1
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201] + [503] * (n - 1)
        for response in responses:
            if response.status_code == 503:
                assert_unavailable(response)
        assert model.circuit_state() == "closed"
        stub.delay_s = 0
        assert (await client.post(URL, json=body())).status_code == 201


def test_a_failed_trial_reopens_the_circuit_without_retrying(
    start_app: Callable[..., Any], stub: ModelServiceStub
) -> None:
    with start_app(breaker_threshold=1) as client:
        stub.default = "read_error"
        assert_unavailable(client.post(URL, json=body()))
        assert circuit(client) == "opened"
        calls = len(stub.calls)

        def trial_made() -> bool:
            assert_unavailable(client.post(URL, json=body()))
            return len(stub.calls) > calls

        until(trial_made, what="a trial call")
        assert len(stub.calls) == calls + 1  # the trial is one attempt, not MODEL_RETRY_ATTEMPTS
        assert circuit(client) == "opened"
