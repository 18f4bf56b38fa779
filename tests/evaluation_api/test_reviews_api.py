"""Human review (LGPD art. 20) and data-subject requests (art. 18) over HTTP: the queue, the decision and
its rules (justification, four eyes, once only), review requests, what the record shows afterwards, the
audit trail, the data subject's export and anonymisation, and retention."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from evaluation_api.database import make_engine
from evaluation_api.identity.roles import Principal, Role
from evaluation_api.privacy import retention
from evaluation_api.records.table import EvaluationRow
from tests.utils.evaluations import SEGMENT_CUSTOMERS, TestClient, body
from tests.utils.identity import bearer, create_account, identity_of, token

URL = "/api/v1/evaluations"
JUSTIFICATION = "Renda comprovada por holerite; o saldo é sazonal."


class People:
    """Accounts of every role in one app, and their headers."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.headers: dict[str, dict[str, str]] = {}
        for username, role in [
            ("ana", Role.ANALYST),
            ("bruno", Role.ANALYST),
            ("rita", Role.REVIEWER),
            ("rui", Role.REVIEWER),
            ("aldo", Role.AUDITOR),
            ("dora", Role.DPO),
        ]:
            create_account(client, username, role)
            self.headers[username] = bearer(token(client, username, role))

    def evaluate(self, who: str, segment: str, **overrides: Any) -> dict[str, Any]:
        response = self.client.post(
            URL, json=body(**SEGMENT_CUSTOMERS[segment], **overrides), headers=self.headers[who]
        )
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    def queue(self, who: str = "rita", **params: Any) -> dict[str, Any]:
        response = self.client.get("/api/v1/reviews", params={"status": "open", **params}, headers=self.headers[who])
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def decide(self, who: str, case_id: str, **payload: Any) -> Any:
        return self.client.post(f"/api/v1/reviews/{case_id}/decision", json=payload, headers=self.headers[who])

    def record(self, evaluation_id: str, who: str = "aldo") -> dict[str, Any]:
        response = self.client.get(f"{URL}/{evaluation_id}", headers=self.headers[who])
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result


@pytest.fixture
def people(start_app: Callable[..., Any]) -> Iterator[People]:
    with start_app(as_role=None) as client:
        yield People(client)


def test_every_review_decision_appears_in_the_queue_oldest_first_with_its_age(people: People) -> None:
    first = people.evaluate("ana", "high_limit_revolvers", name="Primeira Pessoa")
    people.evaluate("ana", "credit_purchasers_good_payers")  # approved: no case
    second = people.evaluate("bruno", "cash_advance_users")
    assert first["decision"] == second["decision"] == "review"

    queue = people.queue()
    assert queue["total"] == 2
    assert [item["evaluation_id"] for item in queue["items"]] == [first["id"], second["id"]]
    item = queue["items"][0]
    assert item["status"] == "open" and item["trigger"] == "automatic"
    assert item["automated_decision"] == "review" and item["segment"] == "high_limit_revolvers"
    assert "revisão humana" in item["reason"]
    assert isinstance(item["age_s"], int) and item["age_s"] >= 0
    assert "Primeira Pessoa" not in str(queue)  # the queue shows no names
    # Paged.
    assert [i["evaluation_id"] for i in people.queue(limit=1, offset=1)["items"]] == [second["id"]]
    # Auditors read it too; analysts and the DPO do not.
    assert people.queue("aldo")["total"] == 2
    for who in ("ana", "dora"):
        assert people.client.get("/api/v1/reviews", headers=people.headers[who]).status_code == 403


@pytest.mark.parametrize(
    ("payload", "field", "rule"),
    [
        ({"decision": "approved"}, "justification", "required"),
        ({"decision": "approved", "justification": "Curta demais."}, "justification", "min_length"),
        ({"decision": "approved", "justification": "   " + "x" * 19 + "   "}, "justification", "min_length"),
        ({"decision": "review", "justification": JUSTIFICATION}, "decision", "choice"),
        ({"justification": JUSTIFICATION}, "decision", "required"),
    ],
)
def test_a_decision_without_a_proper_justification_or_decision_is_a_422_naming_the_field(
    people: People, payload: dict[str, Any], field: str, rule: str
) -> None:
    people.evaluate("ana", "high_limit_revolvers")
    [item] = people.queue()["items"]
    response = people.decide("rita", item["id"], **payload)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"
    assert {(e["field"], e["rule"]) for e in response.json()["errors"]} == {(field, rule)}
    if rule == "min_length":
        assert response.json()["errors"][0]["message"] == "A justificativa precisa ter pelo menos 20 caracteres."
    assert people.queue()["items"][0]["status"] == "open"  # nothing changed


def test_a_decision_closes_the_case_once_and_the_record_shows_both_decisions(people: People) -> None:
    evaluation = people.evaluate("ana", "high_limit_revolvers")
    [item] = people.queue()["items"]
    response = people.decide("rita", item["id"], decision="approved", justification=f"  {JUSTIFICATION}  ")
    assert response.status_code == 200, response.text
    case = response.json()
    assert (case["status"], case["final_decision"], case["reviewer"]) == ("closed", "approved", "rita")
    assert case["justification"] == JUSTIFICATION

    # A second decision on the closed case, by anyone, is a 409; the first one stands.
    again = people.decide("rui", item["id"], decision="denied", justification=JUSTIFICATION)
    assert again.status_code == 409 and again.json()["error"] == "case_closed"
    assert people.queue()["total"] == 0

    record = people.record(evaluation["id"])
    assert record["decision"] == "review"  # the automated decision, as the model and policy made it
    review = record["review"]
    assert review["id"] == item["id"] and review["status"] == "closed"
    assert (review["final_decision"], review["reviewer"], review["justification"]) == (
        "approved",
        "rita",
        JUSTIFICATION,
    )
    assert datetime.fromisoformat(review["decided_at"]) >= datetime.fromisoformat(record["created_at"])
    assert [(h["action"], h["actor"], h["decision"]) for h in review["history"]] == [
        ("opened", "sistema", None),
        ("decided", "rita", "approved"),
    ]
    # The analyst who made it sees the final status too.
    assert people.record(evaluation["id"], "ana")["review"]["final_decision"] == "approved"

    # Every step is in the audit trail, under the evaluation's id.
    trail = people.client.get("/api/v1/audit", params={"record_id": evaluation["id"]}, headers=people.headers["aldo"])
    actions = [(e["action"], e["actor"]) for e in reversed(trail.json()["items"])]
    assert ("review.open", "sistema") in actions and ("review.decide", "rita") in actions
    assert actions.index(("review.open", "sistema")) < actions.index(("review.decide", "rita"))


def test_four_eyes_the_account_that_made_the_evaluation_cannot_decide_its_review(people: People) -> None:
    # Someone who is analyst and reviewer at once (roles from the bank's identity provider).
    both = Principal(subject="dupla", name="dupla", roles=frozenset({Role.ANALYST, Role.REVIEWER}), via="oidc")
    headers = bearer(identity_of(people.client).tokens.issue(both).access_token)
    created = people.client.post(URL, json=body(**SEGMENT_CUSTOMERS["cash_advance_users"]), headers=headers)
    assert created.status_code == 201, created.text
    [item] = people.queue()["items"]
    refused = people.client.post(
        f"/api/v1/reviews/{item['id']}/decision",
        json={"decision": "approved", "justification": JUSTIFICATION},
        headers=headers,
    )
    assert refused.status_code == 403 and refused.json()["error"] == "four_eyes"
    assert people.queue()["items"][0]["status"] == "open"
    # Another reviewer may; and analysts, auditors and the DPO may not decide at all.
    for who in ("ana", "aldo", "dora"):
        assert people.decide(who, item["id"], decision="denied", justification=JUSTIFICATION).status_code == 403
    assert people.decide("rita", item["id"], decision="denied", justification=JUSTIFICATION).status_code == 200


def test_a_review_can_be_requested_for_an_approved_decision_once_at_a_time(people: People) -> None:
    evaluation = people.evaluate("ana", "credit_purchasers_good_payers")
    assert evaluation["decision"] == "approved" and people.queue()["total"] == 0
    url = f"{URL}/{evaluation['id']}/review-requests"
    reason = "O cliente pediu revisão da decisão automatizada (art. 20)."

    # Not another analyst's (404: its existence is not revealed), not a reviewer's to ask.
    assert people.client.post(url, json={"reason": reason}, headers=people.headers["bruno"]).status_code == 404
    assert people.client.post(url, json={"reason": reason}, headers=people.headers["rita"]).status_code == 403
    assert people.client.post(url, json={"reason": "  "}, headers=people.headers["ana"]).status_code == 422

    opened = people.client.post(url, json={"reason": reason}, headers=people.headers["ana"])
    assert opened.status_code == 201, opened.text
    assert (opened.json()["trigger"], opened.json()["opened_by"], opened.json()["reason"]) == (
        "requested",
        "ana",
        reason,
    )
    [item] = people.queue()["items"]
    assert item["evaluation_id"] == evaluation["id"] and item["automated_decision"] == "approved"

    # While it is open, nobody opens another: not the analyst, not the DPO.
    for who in ("ana", "dora"):
        again = people.client.post(url, json={"reason": reason}, headers=people.headers[who])
        assert again.status_code == 409 and again.json()["error"] == "case_already_open"

    assert people.decide("rita", item["id"], decision="denied", justification=JUSTIFICATION).status_code == 200
    record = people.record(evaluation["id"])
    assert (record["decision"], record["review"]["final_decision"]) == ("approved", "denied")
    # Closed: the DPO, acting for the customer, may contest it again: a new case, the newest on the record.
    reopened = people.client.post(url, json={"reason": reason}, headers=people.headers["dora"])
    assert reopened.status_code == 201
    assert people.record(evaluation["id"])["review"]["id"] == reopened.json()["id"]
    assert (
        people.client.post(
            f"{URL}/{'0' * 36}/review-requests", json={"reason": reason}, headers=people.headers["dora"]
        ).status_code
        == 404
    )


def test_the_case_page_has_the_figures_segment_reasons_and_distances_to_every_segment(people: People) -> None:
    evaluation = people.evaluate("ana", "high_limit_revolvers", name="Caso Completo")
    [item] = people.queue()["items"]
    response = people.client.get(f"/api/v1/reviews/{item['id']}", headers=people.headers["rita"])
    assert response.status_code == 200, response.text
    detail = response.json()
    assert detail["case"]["id"] == item["id"]
    assert detail["evaluation"]["id"] == evaluation["id"]
    assert detail["evaluation"]["input"]["name"] == "Caso Completo"
    assert detail["evaluation"]["segment"] == evaluation["segment"]
    assert len(detail["evaluation"]["distances"]) == len(detail["segments"]) == 5
    assert [s["id"] for s in detail["segments"]] == [0, 1, 2, 3, 4]
    assert people.client.get(f"/api/v1/reviews/{'0' * 36}", headers=people.headers["rita"]).status_code == 404


# --- data-subject requests --------------------------------------------------------------------------


def test_the_dpo_exports_everything_about_a_customer_then_anonymises_it(people: People, db_path: Path) -> None:
    name = "Quitéria Anonimizável Zaratustra"
    first = people.evaluate("ana", "high_limit_revolvers", name=name, customer_id="TITULAR-77")
    second = people.evaluate("bruno", "credit_purchasers_good_payers", name=name, customer_id="TITULAR-77")
    other = people.evaluate("ana", "credit_purchasers_good_payers", name="Outra Pessoa", customer_id="OUTRO-1")

    url = "/api/v1/data-subjects/TITULAR-77"
    for who in ("ana", "rita", "aldo"):
        assert people.client.get(url, headers=people.headers[who]).status_code == 403
    exported = people.client.get(url, headers=people.headers["dora"])
    assert exported.status_code == 200, exported.text
    data = exported.json()
    assert data["customer_id"] == "TITULAR-77"
    assert [e["id"] for e in data["evaluations"]] == [first["id"], second["id"]]
    assert {e["input"]["name"] for e in data["evaluations"]} == {name}
    assert data["evaluations"][0]["review"]["status"] == "open"  # its review case goes with it
    assert [r["evaluation_id"] for r in data["reviews"]] == [first["id"]]  # every case, with its history
    assert data["reviews"][0]["history"][0]["action"] == "opened"

    for who in ("ana", "rita", "aldo"):
        assert people.client.post(f"{url}/anonymize", headers=people.headers[who]).status_code == 403
    done = people.client.post(f"{url}/anonymize", headers=people.headers["dora"])
    assert done.status_code == 200, done.text
    assert sorted(done.json()["evaluation_ids"]) == sorted([first["id"], second["id"]])

    for evaluation in (first, second):
        record = people.record(evaluation["id"])
        assert record["anonymized"] is True and record["anonymized_at"] is not None
        assert record["input"]["name"] is None and record["input"]["customer_id"] is None
        assert record["decision"] == evaluation["decision"] and record["segment"] == evaluation["segment"]
        assert record["input"]["balance"] == float(SEGMENT_CUSTOMERS[evaluation["segment"]["key"]]["balance"])
    assert people.record(first["id"])["review"]["status"] == "open"  # the review goes on, without the name
    assert people.record(other["id"])["input"]["name"] == "Outra Pessoa"
    assert people.client.get(url, headers=people.headers["dora"]).json()["evaluations"] == []
    assert people.client.post(f"{url}/anonymize", headers=people.headers["dora"]).json()["evaluation_ids"] == []

    # Both requests are in the audit trail; the second as `anonymize`.
    trail = people.client.get("/api/v1/audit", params={"record_id": first["id"]}, headers=people.headers["dora"])
    actions = {(e["action"], e["actor"]) for e in trail.json()["items"]}
    assert {("data_subject.export", "dora"), ("anonymize", "dora")} <= actions
    # Invalid customer ids are a 422 naming the rule.
    bad = people.client.get("/api/v1/data-subjects/n%C3%A3o%20v%C3%A1lido", headers=people.headers["dora"])
    assert bad.status_code == 422 and bad.json()["errors"][0]["rule"] == "pattern"

    # And the stored bytes hold the name in no form: not even encrypted (SQLite zeroes what it overwrites).
    with sqlite3.connect(db_path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert connection.execute(
            "SELECT count(*) FROM evaluations WHERE customer_name IS NOT NULL AND id IN (?, ?)",
            (first["id"], second["id"]),
        ).fetchone() == (0,)


# --- retention --------------------------------------------------------------------------------------


def test_retention_anonymises_every_record_older_than_retention_days(
    people: People, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = people.evaluate("ana", "high_limit_revolvers", name="Registro Antigo", customer_id="ANTIGO-1")
    recent = people.evaluate("ana", "low_limit_light_users", name="Registro Recente", customer_id="RECENTE-1")
    database_url = f"sqlite:///{tmp_path / 'evaluations.db'}"
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                update(EvaluationRow)
                .where(EvaluationRow.id == old["id"])
                .values(created_at=datetime.now(UTC) - timedelta(days=31))
            )
        assert retention.apply_retention(engine, retention_days=30) == 1
        assert retention.apply_retention(engine, retention_days=30) == 0  # idempotent
    finally:
        engine.dispose()
    assert people.record(old["id"])["anonymized"] is True
    assert people.record(old["id"])["input"]["name"] is None
    assert people.record(recent["id"])["input"]["name"] == "Registro Recente"
    trail = people.client.get("/api/v1/audit", params={"record_id": old["id"]}, headers=people.headers["aldo"])
    assert [e["details"] for e in trail.json()["items"] if e["action"] == "anonymize"] == [{"reason": "retention"}]

    # The command line, with RETENTION_DAYS from the environment.
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("RETENTION_DAYS", "1")
    from evaluation_api import config

    config.get_settings.cache_clear()
    try:
        assert retention.main([]) == 0
    finally:
        config.get_settings.cache_clear()
    assert people.record(recent["id"])["input"]["name"] == "Registro Recente"  # one day old: not yet


# --- on PostgreSQL ----------------------------------------------------------------------------------


@pytest.mark.postgres
def test_the_review_and_data_subject_steps_on_postgresql(
    start_app: Callable[..., Any], postgres_databases: Callable[[], str]
) -> None:
    """The partial unique index (one open case per evaluation), the conditional update (one decision per
    case) and anonymisation, on the production database."""
    with start_app(as_role=None, database_url=postgres_databases()) as client:
        people = People(client)
        evaluation = people.evaluate("ana", "high_limit_revolvers", customer_id="PG-1")
        [item] = people.queue()["items"]
        url = f"{URL}/{evaluation['id']}/review-requests"
        again = client.post(url, json={"reason": "Pedido do cliente."}, headers=people.headers["ana"])
        assert again.status_code == 409
        assert people.decide("rita", item["id"], decision="denied", justification=JUSTIFICATION).status_code == 200
        assert people.decide("rui", item["id"], decision="approved", justification=JUSTIFICATION).status_code == 409
        assert client.post(url, json={"reason": "Pedido do cliente."}, headers=people.headers["ana"]).status_code == 201
        record = people.record(evaluation["id"])
        assert (record["decision"], record["review"]["status"]) == ("review", "open")
        done = client.post("/api/v1/data-subjects/PG-1/anonymize", headers=people.headers["dora"])
        assert done.json()["evaluation_ids"] == [evaluation["id"]]
        assert people.record(evaluation["id"])["input"]["name"] is None


def test_a_review_decision_is_never_recorded_without_its_case(start_app: Callable[..., Any], db_path: Path) -> None:
    """The case is written in the record's transaction: if the case cannot be written, neither is the
    decision (the client gets a 503, nothing was decided)."""
    with start_app() as client:
        with sqlite3.connect(db_path) as connection:
            connection.execute(
                "CREATE TRIGGER refuse_cases BEFORE INSERT ON review_cases BEGIN SELECT RAISE(ABORT, 'full'); END"
            )
        refused = client.post(URL, json=body(**SEGMENT_CUSTOMERS["high_limit_revolvers"]))
        assert refused.status_code == 503 and refused.json()["error"] == "database_unavailable"
        approved = client.post(URL, json=body())  # no case needed: recorded
        assert approved.status_code == 201
    with sqlite3.connect(db_path) as connection:
        assert connection.execute("SELECT decision FROM evaluations").fetchall() == [("approved",)]
        assert connection.execute("SELECT count(*) FROM review_cases").fetchone() == (0,)


def test_lists_show_names_decrypted_the_final_status_and_find_customers_by_their_id(people: People) -> None:
    reviewed = people.evaluate("ana", "high_limit_revolvers", name="Lista Um", customer_id="LISTA-1")
    plain = people.evaluate("ana", "credit_purchasers_good_payers", name="Lista Dois", customer_id="LISTA-2")
    [item] = people.queue()["items"]
    assert people.decide("rita", item["id"], decision="denied", justification=JUSTIFICATION).status_code == 200

    mine = people.client.get(URL, headers=people.headers["ana"]).json()["items"]
    by_id = {i["id"]: i for i in mine}
    assert by_id[reviewed["id"]]["name"] == "Lista Um" and by_id[reviewed["id"]]["customer_id"] == "LISTA-1"
    assert by_id[reviewed["id"]]["review"] == {"id": item["id"], "status": "closed", "final_decision": "denied"}
    assert by_id[plain["id"]]["review"] is None and by_id[plain["id"]]["anonymized"] is False

    # Customer ids are stored encrypted: the filter finds them by their keyed hash.
    found = people.client.get(URL, params={"customer_id": "LISTA-2"}, headers=people.headers["aldo"]).json()
    assert [i["id"] for i in found["items"]] == [plain["id"]]
    # ... and the audit event of the list names no customer id.
    trail = people.client.get("/api/v1/audit", params={"action": "evaluation.list"}, headers=people.headers["aldo"])
    assert "LISTA-2" not in str(trail.json())

    people.client.post("/api/v1/data-subjects/LISTA-1/anonymize", headers=people.headers["dora"])
    anonymized = {i["id"]: i for i in people.client.get(URL, headers=people.headers["ana"]).json()["items"]}
    assert anonymized[reviewed["id"]]["anonymized"] is True
    assert anonymized[reviewed["id"]]["name"] is None and anonymized[reviewed["id"]]["customer_id"] is None
