"""The statement of a decision (`Comunicado da decisão`): its pt-BR content from the record and the
explanation, the deadlines from settings, the PDF read back page by page, who may have one, and the
audit event of every issue."""

from __future__ import annotations

import io
import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from evaluation_api.identity.roles import Role
from evaluation_api.reviews.rules import BRASILIA
from tests.evaluation_api.conftest import app_of
from tests.utils.evaluations import SEGMENT_CUSTOMERS, TestClient, body, until
from tests.utils.identity import bearer, create_account, token

URL = "/api/v1/evaluations"
# Denied: no payment with a balance owed (a hard rule) on top of the segment's own decision.
DENIED = {"balance": 800.0, "purchases": 40.0, "cash_advance": 20.0, "credit_limit": 3000.0, "payments": 0.0}


def explained_evaluation(client: TestClient, **figures: float) -> dict[str, Any]:
    explainer = app_of(client).state.evaluator.explainer
    until(lambda: explainer.geometry is not None, what="the model's parameters")
    response = client.post(URL, json=body(name="Joana Pereira", **figures))
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    assert answer["explanation"] is not None
    return answer


def audit_rows(db_path: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(db_path) as connection:
        connection.row_factory = sqlite3.Row
        return [dict(r) for r in connection.execute("SELECT * FROM audit_events WHERE action = 'statement.issue'")]


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def test_a_denied_decisions_statement_says_why_what_would_change_it_the_data_and_how_to_ask_for_review(
    client: TestClient,
) -> None:
    evaluation = explained_evaluation(client, **DENIED)
    assert evaluation["decision"] == "denied"
    response = client.get(f"{URL}/{evaluation['id']}/statement")
    assert response.status_code == 200, response.text
    statement = response.json()
    assert statement["title"] == "Comunicado da decisão"
    assert (statement["evaluation_id"], statement["customer_name"]) == (evaluation["id"], "Joana Pereira")
    assert (statement["decision"], statement["decision_text"]) == ("denied", "Negada")
    # The rule that denied first, then the segment's reason, then the figures that weighed most: four at most.
    rules = [r["message"] for r in evaluation["reasons"] if not r["code"].startswith("SEGMENT_")]
    segment = [r["message"] for r in evaluation["reasons"] if r["code"].startswith("SEGMENT_")]
    factors = [f["message"] for f in evaluation["explanation"]["factors"]]
    assert statement["principal_reasons"] == (rules + segment + factors)[:4]
    assert statement["principal_reasons"][0] == "Nenhum pagamento no período com saldo devedor de R$ 800,00."
    assert statement["what_would_change"] == evaluation["explanation"]["summary"]
    assert statement["data_used"] == [
        {"label": "Saldo devedor", "value": "R$ 800,00"},
        {"label": "Compras no crédito", "value": "R$ 40,00"},
        {"label": "Saques (adiantamentos)", "value": "R$ 20,00"},
        {"label": "Limite de crédito", "value": "R$ 3.000,00"},
        {"label": "Pagamentos", "value": "R$ 0,00"},
    ]
    assert "Nenhum dado de birôs de crédito" in statement["data_source"]
    today = datetime.now(UTC).astimezone(BRASILIA).date()
    assert (statement["review_due_days"], statement["information_due_days"]) == (15, 10)
    assert statement["review_due_date"] == (today + timedelta(days=15)).isoformat()
    assert statement["information_due_date"] == (today + timedelta(days=10)).isoformat()
    assert f"até {(today + timedelta(days=15)):%d/%m/%Y} (15 dias corridos)" in statement["review_how"]
    assert evaluation["id"] in statement["review_how"]
    assert "art. 20" in statement["legal_basis"] and "12.414" in statement["legal_basis"]


def test_the_pdf_holds_the_same_statement_page_by_page(client: TestClient) -> None:
    evaluation = explained_evaluation(client, **DENIED)
    statement = client.get(f"{URL}/{evaluation['id']}/statement").json()
    response = client.get(f"{URL}/{evaluation['id']}/statement.pdf")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"] == f'attachment; filename="comunicado-{evaluation["id"]}.pdf"'
    reader = PdfReader(io.BytesIO(response.content))
    assert 1 <= len(reader.pages) <= 3
    text = flat(" ".join(page.extract_text() for page in reader.pages))
    for expected in (
        "Comunicado da decisão",
        "Cliente: Joana Pereira",
        f"Código da avaliação: {evaluation['id']}",
        "Decisão: Negada",
        "Principais motivos",
        "O que mudaria a decisão",
        "Dados usados e sua fonte",
        "Saldo devedor: R$ 800,00",
        "Como pedir a revisão",
        *statement["principal_reasons"],
        statement["what_would_change"],
        statement["review_how"],
    ):
        assert flat(expected) in text, expected
    assert reader.metadata is not None and evaluation["id"] in str(reader.metadata.title)


def test_a_review_decision_has_one_and_an_approval_is_409(client: TestClient) -> None:
    review = explained_evaluation(client, **SEGMENT_CUSTOMERS["high_limit_revolvers"])
    assert review["decision"] == "review"
    statement = client.get(f"{URL}/{review['id']}/statement")
    assert statement.status_code == 200, statement.text
    assert statement.json()["decision_text"].startswith("Em análise")
    approved = explained_evaluation(client)
    for suffix in ("statement", "statement.pdf"):
        refused = client.get(f"{URL}/{approved['id']}/{suffix}")
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == "no_statement"


def test_the_deadlines_come_from_the_settings(start_app: Callable[..., Any]) -> None:
    with start_app(review_due_days=30, information_due_days=5) as client:
        evaluation = explained_evaluation(client, **DENIED)
        statement = client.get(f"{URL}/{evaluation['id']}/statement").json()
    today = datetime.now(UTC).astimezone(BRASILIA).date()
    assert statement["review_due_date"] == (today + timedelta(days=30)).isoformat()
    assert statement["information_due_date"] == (today + timedelta(days=5)).isoformat()
    assert "em até 5 dias corridos" in statement["review_how"]


@pytest.fixture
def anonymous(start_app: Callable[..., Any]) -> Iterator[TestClient]:
    with start_app(as_role=None) as client:
        yield client


def test_each_issue_is_audited_and_another_analysts_record_has_none(anonymous: TestClient, db_path: Path) -> None:
    client = anonymous
    create_account(client, "ana", Role.ANALYST)
    create_account(client, "bruno", Role.ANALYST)
    create_account(client, "dora", Role.DPO)
    ana, bruno, dora = (
        bearer(token(client, name, role))
        for name, role in (("ana", Role.ANALYST), ("bruno", Role.ANALYST), ("dora", Role.DPO))
    )
    client.headers.update(ana)
    evaluation = explained_evaluation(client, **DENIED)
    client.headers.pop("Authorization")
    assert client.get(f"{URL}/{evaluation['id']}/statement", headers=ana).status_code == 200
    assert client.get(f"{URL}/{evaluation['id']}/statement.pdf", headers=dora).status_code == 200
    # Another analyst: the same 404 as for an id that does not exist.
    theirs = client.get(f"{URL}/{evaluation['id']}/statement.pdf", headers=bruno)
    assert theirs.status_code == 404
    assert client.get(f"{URL}/{'x' * 37}/statement", headers=ana).status_code == 404
    events = [(e["actor"], e["outcome"], json.loads(e["details"]), e["target_id"]) for e in audit_rows(db_path)]
    assert events == [
        ("ana", "success", {"format": "json"}, evaluation["id"]),
        ("dora", "success", {"format": "pdf"}, evaluation["id"]),
        ("bruno", "denied", {"format": "pdf"}, evaluation["id"]),
    ]
    assert client.get(f"{URL}/{evaluation['id']}/statement").status_code == 401  # no credential


def test_an_anonymised_records_statement_names_no_one(client: TestClient, db_path: Path) -> None:
    evaluation = explained_evaluation(client, **DENIED)
    with sqlite3.connect(db_path) as connection:
        connection.execute(
            "UPDATE evaluations SET customer_name = NULL, anonymized_at = ? WHERE id = ?",
            (datetime.now(UTC).isoformat(), evaluation["id"]),
        )
    assert client.get(f"{URL}/{evaluation['id']}/statement").json()["customer_name"] is None
    pdf = client.get(f"{URL}/{evaluation['id']}/statement.pdf")
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    assert "Cliente: dados pessoais anonimizados" in flat(text)
    assert "Joana" not in text
