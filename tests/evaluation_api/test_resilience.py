"""When the model service or the database fails: retries, the circuit breaker, the deadline, contract
mismatches, and no decision returned (or recorded) that was not made and committed.

The model service is a stub on a real socket (tests/utils/evaluations.ModelServiceStub) that counts its calls;
the breaker's TTL is short (1 s) and waited for by polling. No test asserts a duration."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from evaluation_api.identity.roles import Role
from tests.evaluation_api.conftest import app_of
from tests.utils.evaluations import ModelServiceStub, TestClient, body, json_log_lines, until
from tests.utils.identity import bearer, token

URL = "/api/v1/evaluations"
MODEL_DOWN = "O serviço de análise está indisponível no momento. Tente novamente em alguns segundos."
DB_DOWN = "Não foi possível registrar a decisão; nada foi decidido. Tente novamente em alguns segundos."


def record_count(db_path: Path) -> int:
    with sqlite3.connect(db_path) as connection:
        count: int = connection.execute("SELECT count(*) FROM evaluations").fetchone()[0]
    return count


def assert_unavailable(response: httpx.Response, error: str = "model_unavailable", message: str | None = None) -> None:
    assert response.status_code == 503, response.text
    assert set(response.json()) == {"error", "message"}
    assert response.json()["error"] == error
    if message is not None:
        assert response.json()["message"] == message
    assert int(response.headers["retry-after"]) >= 1


def circuit(client: TestClient) -> str:
    state: str = app_of(client).state.evaluator.model.circuit_state()
    return state


# --- retries -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("failure", [503, 502, 504, "read_error"])
def test_a_transient_failure_is_retried_and_the_evaluation_succeeds(
    client: TestClient, stub: ModelServiceStub, db_path: Path, failure: Any
) -> None:
    stub.script.extend([failure])
    response = client.post(URL, json=body(), headers={"X-Request-ID": "retry-1"})
    assert response.status_code == 201, response.text
    assert len(stub.calls) == 2
    assert stub.request_ids == ["retry-1", "retry-1"]
    assert record_count(db_path) == 1


def test_two_failures_then_success_within_the_attempts(client: TestClient, stub: ModelServiceStub) -> None:
    stub.script.extend([503, "read_error"])
    assert client.post(URL, json=body()).status_code == 201
    assert len(stub.calls) == 3


def test_a_500_is_not_retried(client: TestClient, stub: ModelServiceStub, db_path: Path) -> None:
    stub.script.extend([500])
    assert_unavailable(client.post(URL, json=body()), message=MODEL_DOWN)
    assert len(stub.calls) == 1
    assert client.post(URL, json=body()).status_code == 201
    assert record_count(db_path) == 1


# --- the circuit breaker -----------------------------------------------------------------------------
# The breaker's TTL is 1 s (tests/utils/evaluations.make_settings).


@pytest.mark.parametrize("failure", ["read_error", 503])
def test_the_circuit_opens_fails_fast_and_closes_by_itself(
    client: TestClient, stub: ModelServiceStub, db_path: Path, failure: Any
) -> None:
    settings_attempts, threshold = 3, 3  # the defaults: MODEL_RETRY_ATTEMPTS, BREAKER_THRESHOLD
    stub.default = failure

    # Each failed evaluation is one call of the breaker, made of `attempts` transport calls.
    for n in range(1, threshold + 1):
        assert_unavailable(client.post(URL, json=body()), message=MODEL_DOWN)
        assert len(stub.calls) == n * settings_attempts
    assert circuit(client) == "opened"
    assert client.get("/readyz").json()["checks"]["circuit"] == "opened"

    # Open: the evaluations fail without calling the model service at all.
    calls = len(stub.calls)
    fast = 3
    for _ in range(fast):
        started = time.perf_counter()
        response = client.post(URL, json=body())
        # Fast: no wait on the model service at all, far below one attempt's connect timeout. A bound
        # with a wide margin for a loaded machine, not a measurement.
        assert time.perf_counter() - started < 0.5
        assert_unavailable(response)
        assert int(response.headers["retry-after"]) == 1  # what is left of the 1 s TTL, rounded up
    assert len(stub.calls) == calls

    # Back: once the TTL has passed, one trial call goes through, succeeds and closes the circuit.
    stub.default = "ok"
    statuses: list[int] = []

    def evaluated() -> bool:
        response = client.post(URL, json=body())
        statuses.append(response.status_code)
        if response.status_code != 201:
            assert_unavailable(response)
        return response.status_code == 201

    until(evaluated, timeout_s=15, what="the circuit to close")
    assert len(stub.calls) == calls + 1
    assert circuit(client) == "closed"
    assert client.post(URL, json=body()).status_code == 201
    assert record_count(db_path) == 2  # the 503s recorded nothing
    metrics = client.get("/metrics").text
    assert f'evaluation_failures_total{{error="model_unavailable"}} {threshold + fast + len(statuses) - 1}.0' in metrics


def test_a_failed_trial_call_opens_the_circuit_again(client: TestClient, stub: ModelServiceStub) -> None:
    stub.default = "read_error"
    for _ in range(3):
        client.post(URL, json=body())
    assert circuit(client) == "opened"
    calls = len(stub.calls)

    # Still down when the TTL ends: the first evaluation after it is the trial, which fails...
    def trial_made() -> bool:
        assert_unavailable(client.post(URL, json=body()))
        return len(stub.calls) > calls

    until(trial_made, what="a trial call")
    # ...and the circuit is open again at once: the next evaluation calls nothing.
    assert circuit(client) == "opened"
    after_trial = len(stub.calls)
    assert_unavailable(client.post(URL, json=body()))
    assert len(stub.calls) == after_trial


def test_successes_reset_the_failure_count(client: TestClient, stub: ModelServiceStub) -> None:
    # Two failed evaluations, a success, two failed: never three in a row, the circuit stays closed.
    for behaviour in (500, 500, "ok", 500, 500):
        stub.script.append(behaviour)
        client.post(URL, json=body())
    assert circuit(client) == "closed"
    assert len(stub.calls) == 5


# --- deadline ----------------------------------------------------------------------------------------

SHORT_DEADLINE = {"evaluation_deadline_s": 0.5, "model_connect_timeout_s": 0.2, "model_read_timeout_s": 0.4}


@pytest.mark.parametrize("ended_by", ["read_timeout", "deadline"])
def test_a_model_service_that_does_not_answer_gets_a_503_within_the_deadline(
    start_app: Callable[..., Any], stub: ModelServiceStub, db_path: Path, ended_by: str
) -> None:
    stub.default = "hang"
    # A read timeout past the deadline (0.5 s): only the evaluation's deadline can end the call.
    read_timeout = {"model_read_timeout_s": 0.8} if ended_by == "deadline" else {}
    with start_app(**{**SHORT_DEADLINE, **read_timeout}) as client:
        response = client.post(URL, json=body())
        metrics = client.get("/metrics").text
    assert_unavailable(response)
    timed_out = "O serviço de análise não respondeu a tempo. Tente novamente em alguns segundos."
    if ended_by == "deadline":
        # Only the evaluation's own deadline can end it.
        assert response.json()["message"] == timed_out
        assert response.headers["retry-after"] == "2"
        assert 'evaluation_failures_total{error="model_timeout"} 1.0' in metrics
    else:
        # The transport's read timeout ends each attempt: the deadline or the retry budget, whichever comes first.
        assert response.json()["message"] in {timed_out, MODEL_DOWN}
    assert record_count(db_path) == 0


def test_after_a_slow_spell_evaluations_succeed_again(start_app: Callable[..., Any], stub: ModelServiceStub) -> None:
    stub.default = "hang"
    with start_app(**SHORT_DEADLINE) as client:
        assert_unavailable(client.post(URL, json=body()))
        stub.default = "ok"
        until(lambda: client.post(URL, json=body()).status_code == 201, what="an evaluation to succeed")


# --- the model service answers something this API cannot use ------------------------------------------


def _predictions(items: list[dict[str, Any]]) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(200, json=items, headers={"x-model-version": "other"})


INCOMPATIBLE = {
    "unknown-segment": [{"cluster": 5, "segment": "vip_customers", "distances": [1, 2, 3, 4, 5, 0.5]}],
    "key-and-id-disagree": [{"cluster": 0, "segment": "least_active", "distances": [1, 2, 3, 4, 5]}],
}


@pytest.mark.parametrize("items", INCOMPATIBLE.values(), ids=INCOMPATIBLE.keys())
def test_a_segment_the_api_does_not_know_is_refused_not_decided(
    client: TestClient, stub: ModelServiceStub, db_path: Path, items: list[dict[str, Any]]
) -> None:
    stub.default = _predictions(items)
    response = client.post(URL, json=body())
    assert_unavailable(response, message="O modelo em execução não é compatível com esta versão do serviço.")
    assert response.headers["retry-after"] == "30"
    assert record_count(db_path) == 0
    assert 'evaluation_failures_total{error="unknown_segment"} 1.0' in client.get("/metrics").text


CONTRACT_MISMATCHES: dict[str, Any] = {
    "400": 400,
    "422": 422,
    "fewer-predictions": _predictions([]),
    "more-predictions": _predictions(
        [{"cluster": 3, "segment": "credit_purchasers_good_payers", "distances": [1, 1, 1, 0, 1]}] * 2
    ),
}


@pytest.mark.parametrize("behaviour", CONTRACT_MISMATCHES.values(), ids=CONTRACT_MISMATCHES.keys())
def test_a_contract_mismatch_is_not_retried_and_does_not_open_the_circuit(
    client: TestClient, stub: ModelServiceStub, db_path: Path, behaviour: Any
) -> None:
    stub.default = behaviour
    for n in range(1, 5):
        response = client.post(URL, json=body())
        assert response.status_code >= 500 and response.json()["error"] in {"internal_error", "model_unavailable"}
        assert len(stub.calls) == n  # one call each: retrying the same request cannot help
    assert circuit(client) == "closed"  # the service is up: it is our request it refuses
    assert record_count(db_path) == 0


@pytest.mark.parametrize("behaviour", CONTRACT_MISMATCHES.values(), ids=CONTRACT_MISMATCHES.keys())
def test_a_contract_mismatch_is_a_logged_500(client: TestClient, stub: ModelServiceStub, behaviour: Any) -> None:
    stub.default = behaviour
    with json_log_lines() as lines:
        response = client.post(URL, json=body())
    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"
    assert "retry-after" not in response.headers
    assert any(line["levelname"] == "ERROR" for line in lines), lines


def test_a_garbled_answer_is_a_5xx_with_a_json_body(client: TestClient, stub: ModelServiceStub) -> None:
    stub.default = lambda request: httpx.Response(200, content=b"<html>proxy error</html>")
    response = client.post(URL, json=body())
    assert response.status_code in (500, 503)
    assert response.json()["error"] in {"internal_error", "model_unavailable"}


# --- the database ------------------------------------------------------------------------------------

REFUSE_INSERTS = (
    "CREATE TRIGGER refuse_inserts BEFORE INSERT ON evaluations BEGIN SELECT RAISE(ABORT, 'read-only'); END"
)


def sql(db_path: Path, statement: str) -> None:
    with sqlite3.connect(db_path) as connection:
        connection.execute(statement)


def test_a_database_that_refuses_the_record_is_503_and_nothing_is_decided(
    client: TestClient, stub: ModelServiceStub, db_path: Path
) -> None:
    assert client.post(URL, json=body()).status_code == 201
    sql(db_path, REFUSE_INSERTS)

    response = client.post(URL, json=body(), headers={"X-Request-ID": "db-down-1"})
    assert_unavailable(response, "database_unavailable", DB_DOWN)
    assert "decision" not in response.json()
    assert len(stub.calls) == 2  # the model answered; the decision was made but could not be recorded
    assert record_count(db_path) == 1
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"].startswith("unavailable")
    assert ready.json()["checks"]["model_service"] == "ok"
    assert 'evaluation_failures_total{error="database_unavailable"} 1.0' in client.get("/metrics").text

    sql(db_path, "DROP TRIGGER refuse_inserts")
    assert client.post(URL, json=body()).status_code == 201
    assert client.get("/readyz").status_code == 200
    assert record_count(db_path) == 2


def test_a_dropped_table_is_503_database_unavailable(client: TestClient, db_path: Path) -> None:
    sql(db_path, "DROP TABLE evaluations")
    assert_unavailable(client.post(URL, json=body()), "database_unavailable", DB_DOWN)
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200
    # Reading a record is a 5xx too, never a 404 that would claim the decision does not exist.
    assert client.get(f"{URL}/00000000-0000-4000-8000-000000000000").status_code >= 500


def test_without_migrations_the_api_is_not_ready(start_app: Callable[..., Any]) -> None:
    with start_app(auto_migrate=False, as_role=None) as client:
        # No tables, so no account: a token is checked without the database.
        client.headers.update(bearer(token(client, "analyst", Role.ANALYST)))
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 503
        assert_unavailable(client.post(URL, json=body()), "database_unavailable")


def test_a_failed_commit_is_logged_with_the_request_id(client: TestClient, db_path: Path) -> None:
    sql(db_path, REFUSE_INSERTS)
    with json_log_lines() as lines:
        assert client.post(URL, json=body(), headers={"X-Request-ID": "db-down-2"}).status_code == 503
    commit_lines = [line for line in lines if "could not commit" in line["message"]]
    assert commit_lines
    assert all("db-down-2" in line["request_id"] for line in commit_lines), commit_lines
