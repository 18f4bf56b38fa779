"""Accounts, keys and tokens for the tests: how every test suite authenticates.

- In process (TestClient): `sign_in_as(client, role)` creates an account of that role in the app's
  database and sets the client's `Authorization` header to a token the app issued; `bearer(...)`.
- Against a server started by a test (tests/utils/servers.py): `cli_create_key(database_url, name)`
  and `cli_create_account(database_url, name, role, password)` run the documented command line
  (`python -m evaluation_api.identity.accounts`) on that server's database; `token_for(url, name, password)`
  signs in over HTTP.

Nothing here starts a process at import.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import sys
from typing import Any

import httpx
from fastapi import FastAPI

from evaluation_api.audit import trail as audit
from evaluation_api.identity import accounts
from evaluation_api.identity.access import Identity
from evaluation_api.identity.roles import Role
from tests.utils.servers import ROOT, project_env

PASSWORD = "senha-de-teste-123"  # 18 characters: passes the rule
CONTEXT = audit.Context("tests", "-", "-", None)


def identity_of(client_or_app: Any) -> Identity:
    """The started app's Identity, from a TestClient or the app itself."""
    app: FastAPI = client_or_app if isinstance(client_or_app, FastAPI) else client_or_app.app
    identity: Identity = app.state.identity
    return identity


def create_account(client: Any, username: str, role: Role | str, password: str | None = PASSWORD) -> str:
    """An account in the app's database (the app must be started: `with TestClient(app)`)."""
    role = Role(role)
    accounts.create_account(
        identity_of(client).engine, CONTEXT, username, role.value, None if role is Role.SYSTEM else password
    )
    return username


def token(client: Any, username: str, role: Role | str) -> str:
    """A token the app itself would issue to `username` (no password check: for tests of what comes after)."""
    return identity_of(client).tokens.issue(accounts.principal_of(username, Role(role).value, "token")).access_token


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def sign_in_as(client: Any, role: Role | str = Role.ANALYST, username: str | None = None) -> str:
    """Create an account of `role` and authenticate every later request of `client` as it; returns the name."""
    role = Role(role)
    username = username or f"{role.value}-{secrets.token_hex(3)}"
    with contextlib.suppress(accounts.AccountExists):  # a second app on the same database
        create_account(client, username, role)
    client.headers["Authorization"] = f"Bearer {token(client, username, role)}"
    return username


def analyst_headers(app: FastAPI, username: str = "analyst") -> dict[str, str]:
    """For an httpx.AsyncClient on a started app (lifespan run): an analyst account and its bearer header."""
    create_account(app, username, Role.ANALYST)
    return bearer(token(app, username, Role.ANALYST))


def create_key(client: Any, username: str) -> str:
    """A system key (role system) in the app's database."""
    _, key = accounts.create_key(identity_of(client).engine, CONTEXT, username, Role.SYSTEM.value)
    return key


# --- against a running server ------------------------------------------------------------------------


def _cli(database_url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evaluation_api.identity.accounts", *args],
        cwd=ROOT,
        env=project_env(DATABASE_URL=database_url),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def cli_create_key(database_url: str, username: str = "load-tester") -> str:
    """`python -m evaluation_api.identity.accounts create-key NAME --role system`; returns the key (its last line)."""
    done = _cli(database_url, "create-key", username, "--role", "system")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def cli_create_account(database_url: str, username: str, role: str, password: str = PASSWORD) -> None:
    done = _cli(database_url, "create", username, "--role", role, "--password-stdin", stdin=password + "\n")
    assert done.returncode == 0, done.stderr


def token_for(base_url: str, username: str, password: str = PASSWORD) -> str:
    response = httpx.post(
        f"{base_url}/api/v1/auth/token", data={"username": username, "password": password}, timeout=30
    )
    assert response.status_code == 200, response.text
    access_token: str = response.json()["access_token"]
    return access_token
