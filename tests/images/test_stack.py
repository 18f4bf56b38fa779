"""The images, running together (`make stack`), checked from outside through the gateway on
127.0.0.1: the form, signing in, an evaluation and its record, and the model service's container
stopped and started again."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.images.conftest import container, podman
from tests.utils.evaluations import SEGMENT_CUSTOMERS, body, until

pytestmark = pytest.mark.images
FIRST_EVALUATION_WAIT_S = 60.0  # a deadline on a busy machine, not an expectation


def test_the_gateway_serves_the_form(gateway_url: str) -> None:
    response = httpx.get(f"{gateway_url}/", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert 'id="evaluation-form"' in response.text
    assert "default-src 'self'" in response.headers["content-security-policy"]
    script = httpx.get(f"{gateway_url}/app.js", timeout=10)
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]


def test_evaluating_needs_a_signed_in_caller(gateway_url: str) -> None:
    refused = httpx.post(f"{gateway_url}/api/v1/evaluations", json=body(), timeout=10)
    assert refused.status_code == 401, refused.text


def test_an_evaluation_is_decided_by_the_model_service_and_its_record_read_back(api: httpx.Client) -> None:
    sent = body()
    # The stack's first evaluation right after `make stack`: a 503 with Retry-After is the API's honest
    # answer while its model service warms up (seen once in CI), so the test does what a client is told
    # to do, within a deadline; any other answer, or a 503 that lasts, fails.
    deadline = time.monotonic() + FIRST_EVALUATION_WAIT_S
    while True:
        created = api.post("/api/v1/evaluations", json=sent)
        if created.status_code != 503 or "retry-after" not in created.headers or time.monotonic() > deadline:
            break
        time.sleep(min(int(created.headers["retry-after"]), 2))
    assert created.status_code == 201, created.text
    evaluation = created.json()
    assert evaluation["segment"]["key"] == "credit_purchasers_good_payers"
    assert evaluation["decision"] == "approved"
    assert evaluation["model"]["name"] == "credit_card_segmentation"

    # Read back from PostgreSQL, through the gateway: what was sent and what was decided.
    record = api.get(f"/api/v1/evaluations/{evaluation['id']}")
    assert record.status_code == 200, record.text
    stored = record.json()
    assert {k: stored[k] for k in ("id", "decision", "segment", "model")} == {
        k: evaluation[k] for k in ("id", "decision", "segment", "model")
    }
    figures = SEGMENT_CUSTOMERS["credit_purchasers_good_payers"]
    assert {k: stored["input"][k] for k in figures} == figures
    assert stored["input"]["name"] == sent["name"]


def test_without_the_model_service_the_api_answers_503_with_retry_after_then_recovers(api: httpx.Client) -> None:
    model = container("model-service")
    # Killed at once (no grace period); a stopped container is not restarted by its restart policy.
    podman("stop", "--time", "0", model)
    try:
        refused = api.post("/api/v1/evaluations", json=body())
        assert refused.status_code == 503, refused.text
        assert int(refused.headers["retry-after"]) > 0
        assert refused.json()["error"] == "model_unavailable"
        # Answered fast, within the API's evaluation deadline and a margin, not after a hang.
        assert refused.elapsed.total_seconds() < 5
    finally:
        podman("start", model)

    def evaluates() -> bool:
        return api.post("/api/v1/evaluations", json=body()).status_code == 201

    until(evaluates, timeout_s=120, interval_s=1, what="the API evaluates again once the model service is back")


def test_a_portfolio_run_through_the_gateway_is_scored_by_the_worker_and_downloaded(api: httpx.Client) -> None:
    """An analyst's upload goes through the gateway to the API, which queues it on the volume it shares
    with the portfolio worker's container; the worker scores it (bad row included) and the result
    comes back through the gateway."""
    names = list(next(iter(SEGMENT_CUSTOMERS.values())))
    lines = ["customer_id," + ",".join(names)]
    for i, figures in enumerate(SEGMENT_CUSTOMERS.values()):
        lines.append(f"C{i}," + ",".join(str(figures[n]) for n in names))
    lines.append("C-bad," + ",".join(["-1"] + ["10"] * (len(names) - 1)))  # a negative balance
    created = api.post(
        "/api/v1/portfolio-runs", files={"file": ("carteira.csv", ("\n".join(lines) + "\n").encode(), "text/csv")}
    )
    assert created.status_code == 202, created.text
    run_id = created.json()["id"]

    def finished() -> dict[str, object] | None:
        run: dict[str, object] = api.get(f"/api/v1/portfolio-runs/{run_id}").json()
        return run if run["status"] in ("succeeded", "failed") else None

    # The gateway limits the API paths to 10 requests/s per client: poll gently.
    run = until(finished, timeout_s=120, interval_s=0.5, what=f"portfolio run {run_id} to finish")
    assert run["status"] == "succeeded", run
    summary = run["summary"]
    assert isinstance(summary, dict)
    assert summary["rows_total"] == len(SEGMENT_CUSTOMERS) + 1 and summary["rows_invalid"] == 1
    result = run["result"]
    assert isinstance(result, dict)
    download = api.get(str(result["csv"]))
    assert download.status_code == 200, download.text
    rows = download.text.strip().splitlines()
    assert len(rows) == len(SEGMENT_CUSTOMERS) + 2  # the header, then one row per input row, in order
    assert rows[-1].startswith('"C-bad"') or rows[-1].startswith("C-bad"), rows[-1]
    assert "invalid" in rows[-1] and "balance:ge" in rows[-1]
