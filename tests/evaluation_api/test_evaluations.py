"""The API in process (TestClient, lifespan run), its model service a stub on a real socket answering
with the committed pipeline: the 201 body, the stored record, request ids, /avaliar, health, metrics."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from contract import MODEL_NAME, SEGMENTS_BY_KEY
from decisioning.policy import Policy
from tests.utils.evaluations import (
    MODEL_VERSION,
    PUBLIC_FIELDS,
    ROOT,
    SEGMENT_CUSTOMERS,
    SEGMENT_DECISIONS,
    ModelServiceStub,
    TestClient,
    body,
)

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")


def utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    assert moment.utcoffset() is not None and moment.utcoffset().total_seconds() == 0, text  # type: ignore[union-attr]
    return moment


def stored_rows(db_path: Path) -> list[dict[str, Any]]:
    """The records, read with a connection of our own (not the app's)."""
    with sqlite3.connect(db_path) as connection:
        connection.row_factory = sqlite3.Row
        return [dict(row) for row in connection.execute("SELECT * FROM evaluations")]


# --- POST /api/v1/evaluations ------------------------------------------------------------------------


def test_an_evaluation_answers_201_with_exactly_the_documented_body(
    client: TestClient, stub: ModelServiceStub, policy: Policy
) -> None:
    before = datetime.now(UTC)
    response = client.post("/api/v1/evaluations", json=body())
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/json"
    data = response.json()
    assert set(data) == PUBLIC_FIELDS
    assert UUID.match(data["id"])
    segment = SEGMENTS_BY_KEY["credit_purchasers_good_payers"]
    assert data["segment"] == {"id": segment.id, "key": segment.key, "description": segment.description}
    assert data["decision"] == "approved"
    assert data["reasons"] == [
        {"code": "SEGMENT_APPROVED", "message": policy.segments["credit_purchasers_good_payers"].message}
    ]
    assert data["model"] == {"name": MODEL_NAME, "version": MODEL_VERSION}
    assert data["policy_version"] == policy.version
    assert data["evaluated_at"].endswith("Z")
    assert before <= utc(data["evaluated_at"]) <= datetime.now(UTC)
    assert data["request_id"] == response.headers["x-request-id"]
    # The model service got exactly this customer's five figures, nothing else (no name).
    assert stub.customers == [[SEGMENT_CUSTOMERS["credit_purchasers_good_payers"]]]


@pytest.mark.parametrize("segment_key", list(SEGMENT_CUSTOMERS))
def test_each_segment_gets_its_policy_decision(client: TestClient, segment_key: str) -> None:
    response = client.post("/api/v1/evaluations", json=body(**SEGMENT_CUSTOMERS[segment_key]))
    assert response.status_code == 201, response.text
    data = response.json()
    assert data["segment"]["key"] == segment_key
    assert data["segment"]["id"] == SEGMENTS_BY_KEY[segment_key].id
    assert data["decision"] == SEGMENT_DECISIONS[segment_key]
    assert [r["code"] for r in data["reasons"]] == [f"SEGMENT_{data['decision'].upper()}"]


def test_hard_rules_show_in_the_reasons_with_pt_br_amounts(client: TestClient) -> None:
    response = client.post(
        "/api/v1/evaluations",
        json=body(balance=98765.43, purchases=1435, cash_advance=0, credit_limit=1234.56, payments=0),
    )
    assert response.status_code == 201, response.text
    data = response.json()
    assert data["decision"] == "denied"
    reasons = {r["code"]: r["message"] for r in data["reasons"]}
    assert reasons["ZERO_PAYMENTS_WITH_BALANCE"] == "Nenhum pagamento no período com saldo devedor de R$ 98.765,43."
    assert reasons["BALANCE_FAR_ABOVE_LIMIT"] == (
        "Saldo devedor (R$ 98.765,43) acima de 150% do limite de crédito (R$ 1.234,56)."
    )


def test_the_record_is_committed_before_the_response(client: TestClient, db_path: Path) -> None:
    response = client.post("/api/v1/evaluations", json=body(name="Registro Imediato"))
    assert response.status_code == 201
    [row] = stored_rows(db_path)
    assert row["id"] == response.json()["id"]
    assert row["customer_name"] != "Registro Imediato"  # stored encrypted (test_protection.py)


# --- GET /api/v1/evaluations/{id} --------------------------------------------------------------------


def test_the_record_reads_back_with_inputs_outputs_versions_and_request_id(client: TestClient) -> None:
    sent = body(name="  Zélia Quasímodo ", customer_id="CUST-0042", balance=1234.56)
    created = client.post("/api/v1/evaluations", json=sent, headers={"X-Request-ID": "req-readback-1"})
    assert created.status_code == 201, created.text
    public = created.json()

    response = client.get(f"/api/v1/evaluations/{public['id']}")
    assert response.status_code == 200, response.text
    record = response.json()
    assert set(record) == set(public) | {
        "input",
        "distances",
        "channel",
        "created_at",
        "created_by",
        "anonymized",
        "anonymized_at",
        "review",
    }
    assert record["created_by"] == "analyst"  # the account the client fixture signs in as
    for key in ("id", "decision", "segment", "reasons", "model", "policy_version", "evaluated_at", "request_id"):
        assert record[key] == public[key], key
    assert record["request_id"] == "req-readback-1"
    assert record["model"]["version"] == MODEL_VERSION
    assert record["input"] == {**sent, "name": "Zélia Quasímodo"}
    assert record["channel"] == "api"
    assert len(record["distances"]) == len(SEGMENTS_BY_KEY)
    assert min(range(5), key=record["distances"].__getitem__) == record["segment"]["id"]
    assert utc(record["created_at"]) == utc(public["evaluated_at"])
    assert record["evaluated_at"].endswith("Z") and record["created_at"].endswith("Z")


@pytest.mark.parametrize("evaluation_id", ["00000000-0000-4000-8000-000000000000", "nope", "a" * 64, "%20", "1;DROP"])
def test_an_unknown_id_is_404(client: TestClient, evaluation_id: str) -> None:
    response = client.get(f"/api/v1/evaluations/{evaluation_id}")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "message": "Avaliação não encontrada."}


@pytest.mark.parametrize("length", [65, 5000])
def test_a_very_long_id_is_404(client: TestClient, length: int) -> None:
    response = client.get("/api/v1/evaluations/" + "a" * length)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_an_unknown_route_is_a_json_404(client: TestClient) -> None:
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


# --- request ids -------------------------------------------------------------------------------------


def test_a_supplied_request_id_is_echoed_sent_to_the_model_and_stored(
    client: TestClient, stub: ModelServiceStub
) -> None:
    request_id = "a" * 60 + ".b:c"
    response = client.post("/api/v1/evaluations", json=body(), headers={"X-Request-ID": request_id})
    assert response.status_code == 201
    assert response.headers["x-request-id"] == request_id
    assert response.json()["request_id"] == request_id
    assert stub.request_ids == [request_id]
    assert client.get(f"/api/v1/evaluations/{response.json()['id']}").json()["request_id"] == request_id


@pytest.mark.parametrize(
    "header",
    [None, "", "x" * 65, "y" * 200, "has space", "semi;colon", "comma,separated", "new\tline", "ção"],
    ids=["absent", "empty", "65-chars", "200-chars", "space", "semicolon", "comma", "tab", "non-ascii"],
)
def test_an_absent_or_insane_request_id_is_replaced_by_a_generated_one(
    client: TestClient, stub: ModelServiceStub, header: str | None
) -> None:
    headers = {} if header is None else {"X-Request-ID": header.encode("utf-8")}
    response = client.post("/api/v1/evaluations", json=body(), headers=headers)  # type: ignore[arg-type]
    assert response.status_code == 201
    generated = response.headers["x-request-id"]
    assert GENERATED_ID.match(generated)
    assert response.json()["request_id"] == generated
    assert stub.request_ids == [generated]


def test_every_response_has_a_request_id_even_errors(client: TestClient) -> None:
    for response in (
        client.post("/api/v1/evaluations", json={}),
        client.get("/api/v1/evaluations/unknown"),
        client.get("/healthz"),
    ):
        assert GENERATED_ID.match(response.headers["x-request-id"])


# --- POST /avaliar (the original contract) -----------------------------------------------------------


def test_avaliar_keeps_the_original_contract_and_records_the_evaluation(client: TestClient) -> None:
    customer = SEGMENT_CUSTOMERS["cash_advance_users"]
    response = client.post("/avaliar", json={"name": " Ana Souza ", **customer}, headers={"X-Request-ID": "legacy-1"})
    assert response.status_code == 200, response.text
    data = response.json()
    segment = SEGMENTS_BY_KEY["cash_advance_users"]
    assert list(data)[:3] == ["nome", "cluster", "resposta"]
    assert (data["nome"], data["cluster"], data["resposta"]) == ("Ana Souza", segment.id, segment.description)
    assert set(data) == {"nome", "cluster", "resposta", "id", "decision", "segment", "model_version"}
    assert (data["decision"], data["segment"], data["model_version"]) == ("review", segment.key, MODEL_VERSION)

    record = client.get(f"/api/v1/evaluations/{data['id']}").json()
    assert record["channel"] == "legacy"
    assert record["request_id"] == "legacy-1"
    assert record["input"] == {"name": "Ana Souza", "customer_id": None, **{k: float(v) for k, v in customer.items()}}


def test_avaliar_validates_like_the_api(client: TestClient) -> None:
    response = client.post("/avaliar", json={"name": "Ana", "balance": -1})
    assert response.status_code == 422
    fields = {e["field"]: e["rule"] for e in response.json()["errors"]}
    assert fields == {
        "balance": "ge",
        "purchases": "required",
        "cash_advance": "required",
        "credit_limit": "required",
        "payments": "required",
    }


# --- health, readiness, metrics, the form -------------------------------------------------------------


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_is_200_when_the_model_answers_and_the_database_takes_a_write(client: TestClient, db_path: Path) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ready"
    assert response.json()["checks"] == {
        "model_service": "ok",
        "database": "ok",
        "circuit": "closed",
        "record_writer": "ok",
    }
    assert response.json()["record_writer"] | {"last_commit_s": None} == {
        "alive": True,
        "restarts": 0,
        "queue_depth": 0,
        "oldest_waiting_s": None,
        "committing_for_s": None,
        "last_commit_s": None,
        "stalled": False,
    }
    assert stored_rows(db_path) == []  # the write probe is rolled back


def test_readyz_is_503_when_the_model_service_is_unreachable(client: TestClient, stub: ModelServiceStub) -> None:
    stub.ready = False
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "not_ready"
    assert response.json()["checks"]["model_service"] == "unavailable"
    assert response.json()["checks"]["database"] == "ok"
    assert client.get("/healthz").status_code == 200


def test_metrics_count_decisions_and_http_requests(client: TestClient) -> None:
    assert client.post("/api/v1/evaluations", json=body()).status_code == 201
    assert client.post("/api/v1/evaluations", json=body(**SEGMENT_CUSTOMERS["least_active"])).status_code == 201
    assert client.post("/api/v1/evaluations", json={}).status_code == 422
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'evaluation_decisions_total{decision="approved",segment="credit_purchasers_good_payers"} 1.0' in text
    assert 'evaluation_decisions_total{decision="denied",segment="least_active"} 1.0' in text
    assert 'http_requests_total{handler="/api/v1/evaluations",method="POST",status="2xx"} 2.0' in text
    assert 'http_requests_total{handler="/api/v1/evaluations",method="POST",status="4xx"} 1.0' in text
    assert "http_request_duration_seconds" in text
    assert "evaluation_model_call_seconds_count 2.0" in text


def test_each_app_has_its_own_metrics(start_app: Any) -> None:
    # Apps are built per test: a shared (global) registry would refuse the second app's metrics.
    for _ in range(2):
        with start_app() as c:
            assert c.post("/api/v1/evaluations", json=body()).status_code == 201
            assert 'evaluation_decisions_total{decision="approved",segment="credit_purchasers_good_payers"} 1.0' in (
                c.get("/metrics").text
            )


def test_the_form_is_served_at_the_root(client: TestClient) -> None:
    if not (ROOT / "frontend" / "index.html").is_file():
        pytest.skip("frontend/index.html is not there yet")
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")


def test_the_openapi_schema_documents_the_error_bodies(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    post = schema["paths"]["/api/v1/evaluations"]["post"]
    assert {"201", "422", "503"} <= set(post["responses"])
    assert "404" in schema["paths"]["/api/v1/evaluations/{evaluation_id}"]["get"]["responses"]
