"""Defects found from outside (schema-driven fuzzing, a legacy caller), each pinned by a test."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from evaluation_api.errors import DATABASE_DOWN
from evaluation_api.identity.roles import Role
from tests.utils.evaluations import TestClient, body

LIST = "/api/v1/evaluations"


@pytest.mark.parametrize("value", ["0.5", "1733400000", "-1", "yesterday", "2026-12-05"])
def test_a_date_time_filter_that_is_not_an_iso_date_time_is_422_naming_it(client: TestClient, value: str) -> None:
    for name in ("since", "until"):
        response = client.get(LIST, params={name: value})
        assert response.status_code == 422, (name, value, response.text)
        assert [e["field"] for e in response.json()["errors"]] == [name]


@pytest.mark.parametrize("value", ["2026-12-05T10:00:00Z", "2026-12-05T10:00:00+00:00", "2026-12-05 10:00"])
def test_an_iso_date_time_filter_is_accepted(client: TestClient, value: str) -> None:
    assert client.get(LIST, params={"since": value, "until": "2100-01-01T00:00:00Z"}).status_code == 200


def test_the_legacy_endpoint_ignores_a_field_it_does_not_know_as_the_original_did(client: TestClient) -> None:
    response = client.post("/avaliar", json={**body(), "idade": 41, "canal": "agencia"})
    assert response.status_code == 200, response.text
    assert "idade" not in response.json()


def test_the_v1_api_still_refuses_a_field_it_does_not_know(client: TestClient) -> None:
    response = client.post("/api/v1/evaluations", json={**body(), "idade": 41})
    assert response.status_code == 422
    assert [(e["field"], e["rule"]) for e in response.json()["errors"]] == [("idade", "unknown_field")]


def test_an_evaluation_in_progress_is_a_conflict_with_retry_after_not_a_503() -> None:
    from evaluation_api.errors import Conflict, ServiceUnavailable, error_response
    from evaluation_api.evaluations.routes import IdempotencyConflict, IdempotencyInProgress

    in_progress = IdempotencyInProgress(retry_after_s=1)
    assert isinstance(in_progress, Conflict) and not isinstance(in_progress, ServiceUnavailable)
    response = error_response(in_progress)
    assert (response.status_code, response.headers["retry-after"]) == (409, "1")
    assert "retry-after" not in error_response(IdempotencyConflict()).headers  # retrying it never helps


def test_importing_the_password_module_hashes_nothing() -> None:
    import subprocess
    import sys

    probe = "import evaluation_api.identity.passwords as p; print(p._dummy_hash.cache_info().currsize)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout == "0\n"


def test_timestamps_read_back_are_utc_whether_the_database_kept_a_zone_or_not() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    from evaluation_api.database import as_utc

    naive = datetime(2026, 12, 5, 10, 0)
    assert as_utc(naive) == datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
    brasilia = datetime(2026, 12, 5, 7, 0, tzinfo=timezone(timedelta(hours=-3)))
    assert as_utc(brasilia).tzinfo is UTC and as_utc(brasilia) == datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
    assert as_utc(None) is None


# Each read route and the table it reads; the role that may read it.
READS = [
    (Role.ANALYST, "/api/v1/evaluations", "evaluations"),
    (Role.ANALYST, "/api/v1/portfolio-runs", "portfolio_runs"),
    (Role.AUDITOR, "/api/v1/audit", "audit_events"),
    (Role.REVIEWER, "/api/v1/reviews", "review_cases"),
]


@pytest.mark.parametrize(("role", "path", "table"), READS, ids=[path for _, path, _ in READS])
def test_a_database_error_in_any_route_is_one_503_with_retry_after_not_a_500(
    start_app: Callable[..., Any], db_path: Path, role: Role, path: str, table: str
) -> None:
    """The routes no longer catch SQLAlchemyError one by one: errors.py turns it into a 503 in one place."""
    with start_app(as_role=role) as client:
        assert client.get(path).status_code == 200
        with sqlite3.connect(db_path) as connection:
            connection.execute(f"DROP TABLE {table}")
        response = client.get(path)
    assert response.status_code == 503, response.text
    assert response.json() == {"error": "database_unavailable", "message": DATABASE_DOWN}
    assert int(response.headers["retry-after"]) >= 1
