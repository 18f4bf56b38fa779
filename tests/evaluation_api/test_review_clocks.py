"""The legal clocks of a review: each case's due date from the settings (a review, an information
request), the queue sorted by it with the days left, information requests answered (not decided), the
counts on /metrics by days left and overdue, and the migration that gives existing cases a due date."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from evaluation_api.config import PACKAGE_DIR
from evaluation_api.migrate import upgrade
from evaluation_api.privacy.encryption import DataKeys
from evaluation_api.reviews import rules as reviews
from evaluation_api.reviews.clock import bucket
from tests.evaluation_api.test_reviews_api import People
from tests.utils.evaluations import TestClient

ANSWER = "Enviamos o comunicado da decisão por e-mail ao cliente em 06/12."


@pytest.fixture
def people(start_app: Callable[..., Any]) -> Iterator[People]:
    with start_app(as_role=None, review_due_days=20, information_due_days=7) as client:
        yield People(client)


def set_due(db_path: Path, evaluation_id: str, due_at: datetime) -> None:
    with sqlite3.connect(db_path) as connection:
        connection.execute(
            "UPDATE review_cases SET due_at = ? WHERE evaluation_id = ?",
            (due_at.strftime("%Y-%m-%d %H:%M:%S.%f"), evaluation_id),
        )


def information_request(people: People, evaluation_id: str, who: str = "ana") -> Any:
    return people.client.post(
        f"/api/v1/evaluations/{evaluation_id}/information-requests",
        json={"reason": "O cliente pediu os critérios da análise por telefone."},
        headers=people.headers[who],
    )


def test_each_kind_of_case_is_due_after_its_own_term(people: People) -> None:
    before = datetime.now(UTC)
    review = people.evaluate("ana", "high_limit_revolvers")  # a review case, opened automatically
    approved = people.evaluate("ana", "credit_purchasers_good_payers")
    asked = information_request(people, approved["id"])
    assert asked.status_code == 201, asked.text
    case = asked.json()
    assert (case["kind"], case["trigger"], case["status"]) == ("information", "requested", "open")
    assert case["days_left"] == 7
    due = datetime.fromisoformat(case["due_at"])
    assert before + timedelta(days=7) <= due <= datetime.now(UTC) + timedelta(days=7)
    [automatic] = [i for i in people.queue()["items"] if i["evaluation_id"] == review["id"]]
    assert (automatic["kind"], automatic["days_left"]) == ("review", 20)
    # One open request of each kind at a time; a review may be open beside an information request.
    again = information_request(people, approved["id"])
    assert again.status_code == 409 and again.json()["error"] == "case_already_open"
    beside = people.client.post(
        f"/api/v1/evaluations/{approved['id']}/review-requests",
        json={"reason": "O cliente contesta a decisão."},
        headers=people.headers["ana"],
    )
    assert beside.status_code == 201, beside.text
    assert beside.json()["days_left"] == 20
    # Another analyst's evaluation: 404, as for one that does not exist.
    assert information_request(people, approved["id"], who="bruno").status_code == 404


def test_the_queue_is_sorted_by_due_date_and_shows_the_days_left_overdue_included(
    people: People, db_path: Path
) -> None:
    late = people.evaluate("ana", "high_limit_revolvers")
    soon = people.evaluate("ana", "cash_advance_users")
    later = people.evaluate("bruno", "high_limit_revolvers")
    now = datetime.now(UTC)
    set_due(db_path, late["id"], now - timedelta(days=2))
    set_due(db_path, soon["id"], now)
    set_due(db_path, later["id"], now + timedelta(days=3))
    items = people.queue()["items"]
    assert [i["evaluation_id"] for i in items] == [late["id"], soon["id"], later["id"]]
    assert [i["days_left"] for i in items] == [-2, 0, 3]


def test_an_information_request_is_answered_and_a_review_is_decided_not_the_other_way(people: People) -> None:
    approved = people.evaluate("ana", "credit_purchasers_good_payers")
    case = information_request(people, approved["id"]).json()
    wrong = people.decide("rita", case["id"], decision="approved", justification=ANSWER)
    assert wrong.status_code == 409 and wrong.json()["error"] == "wrong_kind"
    short = people.client.post(
        f"/api/v1/reviews/{case['id']}/answer", json={"answer": "Enviado."}, headers=people.headers["rita"]
    )
    assert short.status_code == 422 and short.json()["errors"][0]["field"] == "answer"
    answered = people.client.post(
        f"/api/v1/reviews/{case['id']}/answer", json={"answer": ANSWER}, headers=people.headers["rita"]
    )
    assert answered.status_code == 200, answered.text
    closed = answered.json()
    assert (closed["status"], closed["final_decision"], closed["justification"]) == ("closed", None, ANSWER)
    assert [e["action"] for e in closed["history"]] == ["opened", "answered"]
    twice = people.client.post(
        f"/api/v1/reviews/{case['id']}/answer", json={"answer": ANSWER}, headers=people.headers["rita"]
    )
    assert twice.status_code == 409 and twice.json()["error"] == "case_closed"
    # A review case is not answered.
    review = people.evaluate("ana", "high_limit_revolvers")
    [item] = [i for i in people.queue()["items"] if i["evaluation_id"] == review["id"]]
    refused = people.client.post(
        f"/api/v1/reviews/{item['id']}/answer", json={"answer": ANSWER}, headers=people.headers["rita"]
    )
    assert refused.status_code == 409 and refused.json()["error"] == "wrong_kind"
    # Only reviewers answer.
    assert (
        people.client.post(
            f"/api/v1/reviews/{item['id']}/answer", json={"answer": ANSWER}, headers=people.headers["aldo"]
        ).status_code
        == 403
    )


def gauges(client: TestClient) -> dict[tuple[str, ...], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, sample.labels["kind"], *([sample.labels["due"]] if "due" in sample.labels else [])): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name.startswith("review_cases_")
    }


def test_metrics_count_open_cases_by_days_left_and_overdue(people: People, db_path: Path) -> None:
    assert gauges(people.client)[("review_cases_overdue", "review")] == 0
    overdue = people.evaluate("ana", "high_limit_revolvers")
    people.evaluate("ana", "cash_advance_users")  # due in 20 days
    approved = people.evaluate("ana", "credit_purchasers_good_payers")
    information_request(people, approved["id"])  # due in 7 days
    set_due(db_path, overdue["id"], datetime.now(UTC) - timedelta(days=1))
    counts = gauges(people.client)
    assert counts[("review_cases_overdue", "review")] == 1
    assert counts[("review_cases_overdue", "information")] == 0
    assert counts[("review_cases_open", "review", "overdue")] == 1
    assert counts[("review_cases_open", "review", "8d+")] == 1
    assert counts[("review_cases_open", "information", "4-7d")] == 1
    assert sum(v for k, v in counts.items() if k[0] == "review_cases_open") == 3


def test_a_scrape_with_the_database_gone_still_answers_without_the_clocks(people: People, db_path: Path) -> None:
    with sqlite3.connect(db_path) as connection:
        connection.execute("DROP TABLE review_cases")
    response = people.client.get("/metrics")
    assert response.status_code == 200
    assert "review_cases_open" not in response.text and "evaluation_decisions_total" in response.text


@pytest.mark.parametrize(
    ("days", "name"), [(-3, "overdue"), (0, "today"), (1, "1-3d"), (3, "1-3d"), (4, "4-7d"), (8, "8d+")]
)
def test_days_left_buckets(days: int, name: str) -> None:
    assert bucket(days) == name


def test_days_are_counted_in_brasilias_calendar() -> None:
    # 01:00 UTC on the 10th is still the 9th in Brasília: a case due at 12:00 UTC on the 10th is due tomorrow.
    now = datetime(2026, 12, 10, 1, 0, tzinfo=UTC)
    assert reviews.days_left(datetime(2026, 12, 10, 12, 0, tzinfo=UTC), now) == 1
    assert reviews.days_left(datetime(2026, 12, 8, 12, 0, tzinfo=UTC), now) == -1


def test_the_migration_gives_existing_cases_a_due_date_fifteen_days_after_they_opened(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    config = Config()
    config.set_main_option("script_location", str(PACKAGE_DIR / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0006")  # the schema before the clocks
    opened = datetime(2026, 11, 1, 9, 30)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO review_cases (id, evaluation_id, status, trigger, opened_by, opened_at, history) "
                "VALUES ('c1', 'e1', 'open', 'automatic', 'sistema', :opened, 'x')"
            ),
            {"opened": opened},
        )
    upgrade(engine, data_keys=DataKeys.from_file(tmp_path / "data-keys.json", create=True))
    with engine.connect() as connection:
        kind, due = connection.execute(text("SELECT kind, due_at FROM review_cases WHERE id = 'c1'")).one()
    assert kind == "review"
    assert datetime.fromisoformat(str(due)).replace(tzinfo=None) == opened + timedelta(days=15)
