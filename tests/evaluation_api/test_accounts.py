"""Accounts: the command line's documented forms, sign-in and lockout, system keys, and the admin routes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from evaluation_api.identity.roles import Role
from tests.utils.evaluations import TestClient, body, until
from tests.utils.identity import PASSWORD, bearer, create_account, create_key, token
from tests.utils.servers import ROOT, project_env


def run_cli(db_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """The command exactly as the README gives it, from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "evaluation_api.identity.accounts", *args],
        cwd=ROOT,
        env=project_env(DATABASE_URL=f"sqlite:///{db_path}"),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def rows(db_path: Path, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db_path) as connection:
        return list(connection.execute(query))


@pytest.fixture
def anonymous(start_app: Callable[..., Any]) -> Iterator[TestClient]:
    with start_app(as_role=None) as client:
        yield client


# --- the command line --------------------------------------------------------------------------------


def test_cli_creates_accounts_and_keys_that_work(tmp_path: Path, start_app: Callable[..., Any]) -> None:
    db = tmp_path / "evaluations.db"
    created = run_cli(db, "create", "ana.lista", "--role", "analyst", "--password-stdin", stdin="uma senha longa 1\n")
    assert created.returncode == 0, created.stderr
    again = run_cli(db, "create", "ana.lista", "--role", "analyst", "--password-stdin", stdin="uma senha longa 1\n")
    assert again.returncode != 0 and "já existe" in again.stderr
    weak = run_cli(db, "create", "curta", "--role", "analyst", "--password-stdin", stdin="curta\n")
    assert weak.returncode != 0 and "12 caracteres" in weak.stderr
    bad_role = run_cli(db, "create", "root", "--role", "root", "--password-stdin", stdin=PASSWORD + "\n")
    assert bad_role.returncode != 0

    made = run_cli(db, "create-key", "core-banking", "--role", "system")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    assert key.startswith("cek_") and len(key) > 40
    # Only a digest is stored: the key itself is nowhere in the database.
    assert key.encode() not in db.read_bytes()
    [(digest,)] = rows(db, "SELECT digest FROM api_keys")
    assert len(digest) == 64 and digest not in made.stdout
    # No password hash that is not Argon2id.
    [(password_hash,)] = rows(db, "SELECT password_hash FROM accounts WHERE username = 'ana.lista'")
    assert password_hash.startswith("$argon2id$")

    listed = run_cli(db, "list")
    assert "ana.lista\tanalyst\tativa" in listed.stdout and "core-banking\tsystem" in listed.stdout
    # Every change is an audit event, with the operator as actor.
    actions = [a for (a,) in rows(db, "SELECT action FROM audit_events ORDER BY id")]
    assert actions == ["account.create", "account.create", "api_key.create"]

    # The same database, served: the password signs in, the key evaluates.
    with start_app(as_role=None) as client:
        signed = client.post("/api/v1/auth/token", data={"username": "ana.lista", "password": "uma senha longa 1"})
        assert signed.status_code == 200, signed.text
        assert client.post("/avaliar", json=body(), headers=bearer(key)).status_code == 200
        # Disabled by the command line: the key stops working (the app's key cache is 30 s by default: a new app).
    assert run_cli(db, "disable", "core-banking").returncode == 0
    with start_app(as_role=None) as client:
        assert client.post("/avaliar", json=body(), headers=bearer(key)).status_code == 401


def test_cli_resets_a_password_and_lifts_the_lockout(tmp_path: Path, start_app: Callable[..., Any]) -> None:
    db = tmp_path / "evaluations.db"
    assert run_cli(db, "create", "bia", "--role", "reviewer", "--password-stdin", stdin=PASSWORD + "\n").returncode == 0
    with start_app(as_role=None) as client:
        for _ in range(5):
            client.post("/api/v1/auth/token", data={"username": "bia", "password": "errada-errada-1"})
        assert client.post("/api/v1/auth/token", data={"username": "bia", "password": PASSWORD}).status_code == 429
    done = run_cli(db, "reset-password", "bia", "--password-stdin", stdin="outra senha longa 2\n")
    assert done.returncode == 0, done.stderr
    with start_app(as_role=None) as client:
        signed = client.post("/api/v1/auth/token", data={"username": "bia", "password": "outra senha longa 2"})
        assert signed.status_code == 200


# --- sign-in and lockout -----------------------------------------------------------------------------


def test_a_wrong_password_and_an_unknown_name_answer_the_same(anonymous: TestClient) -> None:
    create_account(anonymous, "carla", Role.ANALYST)
    wrong = anonymous.post("/api/v1/auth/token", data={"username": "carla", "password": "not-the-password"})
    unknown = anonymous.post("/api/v1/auth/token", data={"username": "ninguem", "password": "not-the-password"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"error": "unauthorized", "message": "Usuário ou senha incorretos."}
    assert wrong.headers["www-authenticate"].startswith("Bearer")


def test_five_wrong_passwords_lock_the_account_for_a_while(start_app: Callable[..., Any], db_path: Path) -> None:
    with start_app(as_role=None, auth_lockout_s=2) as client:
        create_account(client, "davi", Role.ANALYST)
        for attempt in range(4):
            response = client.post("/api/v1/auth/token", data={"username": "davi", "password": f"wrong-{attempt}"})
            assert response.status_code == 401, (attempt, response.text)
        # The fifth locks the account, and says so.
        fifth = client.post("/api/v1/auth/token", data={"username": "davi", "password": "wrong-4"})
        assert fifth.status_code == 429
        # Locked: even the right password is refused, with 429 and Retry-After, saying nothing of the password.
        locked = client.post("/api/v1/auth/token", data={"username": "davi", "password": PASSWORD})
        assert locked.status_code == 429
        assert 1 <= int(locked.headers["retry-after"]) <= 2
        assert locked.json()["error"] == "too_many_attempts"
        assert "senha" not in locked.json()["message"].lower()
        # After the lockout, the right password works again, and the count starts over.
        until(
            lambda: (
                client.post("/api/v1/auth/token", data={"username": "davi", "password": PASSWORD}).status_code == 200
            ),
            timeout_s=15,
            interval_s=0.5,
            what="the lockout to end",
        )
    outcomes = rows(
        db_path, "SELECT outcome, json_extract(details, '$.reason') FROM audit_events WHERE action = 'auth.login'"
    )
    assert outcomes[:5] == [("failure", "password")] * 5
    assert ("denied", "locked") in outcomes
    assert outcomes[-1] == ("success", None)


def test_a_disabled_account_cannot_sign_in(anonymous: TestClient) -> None:
    create_account(anonymous, "eva", Role.ANALYST)
    create_account(anonymous, "root-admin", Role.ADMIN)
    admin = bearer(token(anonymous, "root-admin", Role.ADMIN))
    assert anonymous.post("/api/v1/accounts/eva/disable", headers=admin).status_code == 204
    response = anonymous.post("/api/v1/auth/token", data={"username": "eva", "password": PASSWORD})
    assert response.status_code == 401


def test_a_system_account_has_no_password_to_sign_in_with(anonymous: TestClient) -> None:
    create_key(anonymous, "batch-system")
    response = anonymous.post("/api/v1/auth/token", data={"username": "batch-system", "password": PASSWORD})
    assert response.status_code == 401


# --- the admin routes --------------------------------------------------------------------------------


def test_admins_manage_accounts_over_the_api_and_each_change_is_audited(anonymous: TestClient, db_path: Path) -> None:
    create_account(anonymous, "chefe", Role.ADMIN)
    admin = bearer(token(anonymous, "chefe", Role.ADMIN))
    created = anonymous.post(
        "/api/v1/accounts", json={"username": "fabio", "role": "auditor", "password": PASSWORD}, headers=admin
    )
    assert created.status_code == 201, created.text
    assert created.json()["role"] == "auditor" and created.json()["created_by"] == "chefe"
    duplicate = anonymous.post(
        "/api/v1/accounts", json={"username": "fabio", "role": "auditor", "password": PASSWORD}, headers=admin
    )
    assert duplicate.status_code == 409
    weak = anonymous.post(
        "/api/v1/accounts", json={"username": "gil", "role": "analyst", "password": "x"}, headers=admin
    )
    assert weak.status_code == 422
    assert weak.json()["errors"][0]["field"] == "password"
    bad_role = anonymous.post(
        "/api/v1/accounts", json={"username": "gil", "role": "root", "password": PASSWORD}, headers=admin
    )
    assert bad_role.status_code == 422
    key = anonymous.post("/api/v1/accounts/erp/keys", headers=admin)
    assert key.status_code == 201
    assert anonymous.post("/avaliar", json=body(), headers=bearer(key.json()["key"])).status_code == 200
    assert (
        anonymous.post(
            "/api/v1/accounts/fabio/password", json={"password": "nova senha longa 3"}, headers=admin
        ).status_code
        == 204
    )
    assert anonymous.post("/api/v1/accounts/nobody/disable", headers=admin).status_code == 404
    listed = anonymous.get("/api/v1/accounts", headers=admin).json()
    assert {a["username"]: a["role"] for a in listed} == {"chefe": "admin", "fabio": "auditor", "erp": "system"}
    assert "password_hash" not in str(listed)
    # A key is revoked under its own account only.
    assert anonymous.delete(f"/api/v1/accounts/fabio/keys/{key.json()['id']}", headers=admin).status_code == 404
    revoked = anonymous.delete(f"/api/v1/accounts/erp/keys/{key.json()['id']}", headers=admin)
    assert revoked.status_code == 204

    events = rows(db_path, "SELECT actor, action, target_id FROM audit_events WHERE actor = 'chefe' ORDER BY id")
    assert [(a, t) for _, a, t in events] == [
        ("account.create", "fabio"),
        ("account.create", "erp"),
        ("api_key.create", "erp"),
        ("account.password_reset", "fabio"),
        ("api_key.revoke", key.json()["id"]),
    ]


def test_the_first_admin_is_made_once(anonymous: TestClient) -> None:
    from evaluation_api.identity.accounts import ensure_admin
    from tests.utils.identity import identity_of

    engine = identity_of(anonymous).engine
    password = ensure_admin(engine)
    assert password is not None and len(password) >= 12
    assert ensure_admin(engine) is None  # the next starts print nothing
    signed = anonymous.post("/api/v1/auth/token", data={"username": "admin", "password": password})
    assert signed.status_code == 200
