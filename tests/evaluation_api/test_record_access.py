"""Per-record rules, the audit events of a read, the list of one's own evaluations, and Idempotency-Key."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from evaluation_api.identity.roles import Role
from tests.utils.evaluations import ModelServiceStub, TestClient, body, until
from tests.utils.identity import bearer, create_account, create_key, token

URL = "/api/v1/evaluations"


@pytest.fixture
def anonymous(start_app: Callable[..., Any]) -> Iterator[TestClient]:
    with start_app(as_role=None) as client:
        yield client


def as_role(client: TestClient, username: str, role: Role) -> dict[str, str]:
    create_account(client, username, role)
    return bearer(token(client, username, role))


def audit_rows(db_path: Path, where: str = "1=1") -> list[dict[str, Any]]:
    with sqlite3.connect(db_path) as connection:
        connection.row_factory = sqlite3.Row
        return [dict(r) for r in connection.execute(f"SELECT * FROM audit_events WHERE {where} ORDER BY id")]


# --- per record --------------------------------------------------------------------------------------


def test_a_record_is_read_by_its_creator_reviewers_auditors_and_the_dpo_only(anonymous: TestClient) -> None:
    client = anonymous
    ana = as_role(client, "ana", Role.ANALYST)
    bruno = as_role(client, "bruno", Role.ANALYST)
    created = client.post(URL, json=body(), headers=ana)
    assert created.status_code == 201
    record_url = f"{URL}/{created.json()['id']}"

    assert client.get(record_url, headers=ana).json()["created_by"] == "ana"
    for username, role in (("rita", Role.REVIEWER), ("otto", Role.AUDITOR), ("dora", Role.DPO)):
        assert client.get(record_url, headers=as_role(client, username, role)).status_code == 200, role
    # Another analyst: the same 404 as for an id that does not exist (its existence is not revealed).
    theirs = client.get(record_url, headers=bruno)
    assert theirs.status_code == 404
    assert theirs.json() == client.get(f"{URL}/00000000-0000-4000-8000-000000000000", headers=bruno).json()
    # A calling system reads what it made, not what a person made.
    key = bearer(create_key(client, "core-banking"))
    assert client.get(record_url, headers=key).status_code == 404
    own = client.post(URL, json=body(), headers=key)
    assert client.get(f"{URL}/{own.json()['id']}", headers=key).status_code == 200
    # Admins manage accounts, not records.
    assert client.get(record_url, headers=as_role(client, "root", Role.ADMIN)).status_code == 403


def test_a_read_is_an_audit_event_that_auditors_and_the_dpo_can_see(anonymous: TestClient, db_path: Path) -> None:
    client = anonymous
    ana = as_role(client, "ana", Role.ANALYST)
    bruno = as_role(client, "bruno", Role.ANALYST)
    auditor = as_role(client, "otto", Role.AUDITOR)
    evaluation_id = client.post(URL, json=body(), headers=ana).json()["id"]

    read = client.get(f"{URL}/{evaluation_id}", headers={**auditor, "X-Request-ID": "audited-read-1"})
    assert read.status_code == 200
    assert client.get(f"{URL}/{evaluation_id}", headers={**bruno, "X-Request-ID": "refused-read-1"}).status_code == 404

    events = audit_rows(db_path, f"target_id = '{evaluation_id}'")
    assert [(e["actor"], e["actor_roles"], e["action"], e["outcome"], e["request_id"]) for e in events] == [
        ("otto", "auditor", "evaluation.read", "success", "audited-read-1"),
        ("bruno", "analyst", "evaluation.read", "denied", "refused-read-1"),
    ]
    assert all(e["client_address"] == "testclient" and e["occurred_at"] for e in events)

    trail = client.get("/api/v1/audit", params={"record_id": evaluation_id}, headers=auditor)
    assert trail.status_code == 200, trail.text
    items = trail.json()["items"]
    assert [(i["actor"], i["action"], i["outcome"]) for i in items] == [
        ("bruno", "evaluation.read", "denied"),
        ("otto", "evaluation.read", "success"),
    ]
    assert items[0]["request_id"] == "refused-read-1"
    dpo = as_role(client, "dora", Role.DPO)
    assert client.get("/api/v1/audit", params={"record_id": evaluation_id}, headers=dpo).status_code == 200
    assert client.get("/api/v1/audit", params={"record_id": evaluation_id}, headers=ana).status_code == 403
    # Reading the trail is itself on the trail.
    assert [e["actor"] for e in audit_rows(db_path, "action = 'audit.read'")] == ["otto", "dora"]


def test_audit_events_cannot_be_changed_or_deleted(anonymous: TestClient, db_path: Path) -> None:
    create_account(anonymous, "ana", Role.ANALYST)
    with sqlite3.connect(db_path) as connection:
        for statement in ("UPDATE audit_events SET actor = 'someone-else'", "DELETE FROM audit_events"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                connection.execute(statement)
    assert [e["actor"] for e in audit_rows(db_path)] == ["tests"]


# --- the list ----------------------------------------------------------------------------------------


def test_the_list_shows_ones_own_evaluations_and_auditors_see_all_with_filters(anonymous: TestClient) -> None:
    client = anonymous
    ana = as_role(client, "ana", Role.ANALYST)
    bruno = as_role(client, "bruno", Role.ANALYST)
    for n in range(3):
        assert client.post(URL, json=body(name=f"Cliente A{n}"), headers=ana).status_code == 201
    assert client.post(URL, json=body(name="Cliente B0", balance=99999, payments=0), headers=bruno).status_code == 201

    mine = client.get(URL, headers=ana).json()
    assert [i["name"] for i in mine["items"]] == ["Cliente A2", "Cliente A1", "Cliente A0"]  # newest first
    assert {i["created_by"] for i in mine["items"]} == {"ana"}
    assert mine["next_offset"] is None
    # Paging.
    first = client.get(URL, params={"limit": 2}, headers=ana).json()
    assert len(first["items"]) == 2 and first["next_offset"] == 2
    rest = client.get(URL, params={"limit": 2, "offset": 2}, headers=ana).json()
    assert [i["name"] for i in rest["items"]] == ["Cliente A0"] and rest["next_offset"] is None
    # An analyst cannot list someone else's by asking.
    asked = client.get(URL, params={"created_by": "bruno"}, headers=ana).json()
    assert {i["created_by"] for i in asked["items"]} == {"ana"}

    auditor = as_role(client, "otto", Role.AUDITOR)
    everyone = client.get(URL, headers=auditor).json()
    assert len(everyone["items"]) == 4
    by_bruno = client.get(URL, params={"created_by": "bruno"}, headers=auditor).json()
    assert [i["name"] for i in by_bruno["items"]] == ["Cliente B0"]
    denied = client.get(URL, params={"decision": "denied"}, headers=auditor).json()
    assert [i["name"] for i in denied["items"]] == ["Cliente B0"]
    assert client.get(URL, params={"limit": 0}, headers=auditor).status_code == 422
    assert client.get(URL, params={"decision": "maybe"}, headers=auditor).status_code == 422


# --- Idempotency-Key ---------------------------------------------------------------------------------


def count_rows(db_path: Path) -> int:
    with sqlite3.connect(db_path) as connection:
        (n,) = connection.execute("SELECT count(*) FROM evaluations").fetchone()
    return int(n)


def test_the_same_key_and_body_answer_the_first_evaluation(
    client: TestClient, db_path: Path, stub: ModelServiceStub
) -> None:
    headers = {"Idempotency-Key": "retry-0001"}
    first = client.post(URL, json=body(), headers=headers)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    again = client.post(URL, json=body(), headers=headers)
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()  # same id, same decision, same request id: the first answer
    assert count_rows(db_path) == 1
    assert len(stub.calls) == 1  # the model was not asked twice
    # Another key is another evaluation.
    other = client.post(URL, json=body(), headers={"Idempotency-Key": "retry-0002"})
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    assert count_rows(db_path) == 2


def test_the_same_key_with_another_body_is_a_409(client: TestClient, db_path: Path) -> None:
    headers = {"Idempotency-Key": "retry-0003"}
    assert client.post(URL, json=body(), headers=headers).status_code == 201
    response = client.post(URL, json=body(name="Outra Pessoa"), headers=headers)
    assert response.status_code == 409
    assert response.json()["error"] == "idempotency_key_reused"
    assert count_rows(db_path) == 1


def test_keys_are_per_account(anonymous: TestClient, db_path: Path) -> None:
    ana = as_role(anonymous, "ana", Role.ANALYST)
    bruno = as_role(anonymous, "bruno", Role.ANALYST)
    headers = {"Idempotency-Key": "shared-key"}
    a = anonymous.post(URL, json=body(), headers={**ana, **headers})
    b = anonymous.post(URL, json=body(), headers={**bruno, **headers})
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]
    assert count_rows(db_path) == 2


def test_a_failed_evaluation_frees_its_key_for_the_retry(client: TestClient, stub: ModelServiceStub) -> None:
    stub.script.extend(["read_error"] * 10)  # more than the retries: this attempt fails
    headers = {"Idempotency-Key": "retry-after-503"}
    failed = client.post(URL, json=body(), headers=headers)
    assert failed.status_code == 503
    stub.script.clear()
    # The retry evaluates (once the circuit, opened by the failures, lets calls through again).
    retried = until(
        lambda: (r := client.post(URL, json=body(), headers=headers)).status_code == 201 and r,
        what="the retry to be evaluated",
    )
    assert "idempotent-replayed" not in retried.headers


def test_an_idempotency_key_too_long_is_a_422(client: TestClient) -> None:
    response = client.post(URL, json=body(), headers={"Idempotency-Key": "k" * 256})
    assert response.status_code == 422


@pytest.mark.postgres
def test_audit_events_are_append_only_on_postgresql(
    start_app: Callable[..., Any], postgres_databases: Callable[[], str]
) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import DBAPIError

    url = postgres_databases()
    with start_app(database_url=url, as_role=Role.ANALYST) as client:
        assert client.post(URL, json=body()).status_code == 201
    engine = create_engine(url)
    try:
        for statement in ("UPDATE audit_events SET actor = 'x'", "DELETE FROM audit_events", "TRUNCATE audit_events"):
            with engine.begin() as connection, pytest.raises(DBAPIError, match="append-only"):
                connection.execute(text(statement))
        with engine.connect() as connection:
            grants = connection.execute(
                text(
                    "SELECT privilege_type FROM information_schema.role_table_grants "
                    "WHERE table_name = 'audit_events' AND grantee = 'PUBLIC'"
                )
            ).all()
            assert grants == []
            assert connection.execute(text("SELECT count(*) FROM audit_events")).scalar_one() == 1
    finally:
        engine.dispose()
