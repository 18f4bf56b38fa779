"""Who may call what: every route the app serves, against every role and no credential at all.

A route added without a rule in evaluation_api/identity/access.py RULES fails here (and is refused at run time)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import Mount, Route

from evaluation_api.identity.access import PUBLIC, RULES
from evaluation_api.identity.roles import Role
from tests.evaluation_api.conftest import app_of
from tests.utils.evaluations import TestClient, body
from tests.utils.identity import bearer, create_account, create_key, token

PARAM = re.compile(r"{([^}]+)}")
PARAM_VALUES = {
    "evaluation_id": str(uuid.uuid4()),
    "username": "nobody-here",
    "key_id": str(uuid.uuid4()),
    "case_id": str(uuid.uuid4()),
    "customer_id": "nobody-here",
    "run_id": str(uuid.uuid4()),
    "version_id": "999",
    "challenger_id": "999",
}


def served_routes(app: FastAPI) -> Iterator[tuple[str, str]]:
    """(method, path template) of every route the app serves, but the static form's mount."""
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, Mount):
            assert route.path == "", f"a mount other than the form's: {route.path}"
            continue
        assert isinstance(route, Route | APIRoute), route
        assert context.path is not None
        for method in sorted((context.methods or set()) - {"HEAD"}):
            yield method, context.path


def missing_rules(app: FastAPI) -> list[str]:
    return [f"{method} {path}" for method, path in served_routes(app) if (method, path) not in RULES]


@pytest.fixture
def anonymous(start_app: Callable[..., Any]) -> Iterator[TestClient]:
    with start_app(as_role=None) as client:
        yield client


def test_every_route_has_a_rule(anonymous: TestClient) -> None:
    assert missing_rules(app_of(anonymous)) == [], "add these to RULES in evaluation_api/identity/access.py"


def test_a_route_without_a_rule_fails_the_walk_and_is_refused(anonymous: TestClient) -> None:
    app = app_of(anonymous)

    async def unruled() -> dict[str, str]:
        return {"secret": "yes"}

    app.add_api_route("/api/v1/unruled", unruled, methods=["GET"])
    app.router.routes.insert(0, app.router.routes.pop())  # before the form's catch-all mount
    assert missing_rules(app) == ["GET /api/v1/unruled"]
    create_account(anonymous, "admin-x", Role.ADMIN)
    response = anonymous.get("/api/v1/unruled", headers=bearer(token(anonymous, "admin-x", Role.ADMIN)))
    assert response.status_code == 403
    assert "secret" not in response.text


def test_every_route_against_every_role(anonymous: TestClient) -> None:
    """Allowed: anything but 401/403 (a 404 or 422 for the made-up ids and empty bodies is fine).
    Not allowed: 403. No credential: 401 with WWW-Authenticate: Bearer, except on public routes."""
    client = anonymous
    credentials: dict[Role, dict[str, str]] = {}
    for role in Role:
        create_account(client, f"matrix-{role.value}", role)
        credentials[role] = bearer(token(client, f"matrix-{role.value}", role))
    # A system key counts as its account's role.
    key = bearer(create_key(client, "matrix-key"))

    checked = 0
    for method, path in served_routes(app_of(client)):
        rule = RULES[(method, path)]
        url = PARAM.sub(lambda m: PARAM_VALUES[m.group(1)], path)
        kwargs: dict[str, Any] = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
        nobody = client.request(method, url, **kwargs)
        if rule == PUBLIC:
            assert nobody.status_code not in (401, 403), (method, path, nobody.status_code)
            continue
        assert nobody.status_code == 401, (method, path, nobody.status_code, nobody.text)
        assert nobody.headers["www-authenticate"].startswith("Bearer"), (method, path)
        assert nobody.json()["error"] == "unauthorized"
        for role, headers in credentials.items():
            answer = client.request(method, url, headers=headers, **kwargs)
            if role in rule:
                assert answer.status_code not in (401, 403), (method, path, role, answer.status_code, answer.text)
            else:
                assert answer.status_code == 403, (method, path, role, answer.status_code, answer.text)
                assert answer.json()["error"] == "forbidden"
        by_key = client.request(method, url, headers=key, **kwargs)
        assert (by_key.status_code not in (401, 403)) == (Role.SYSTEM in rule), (method, path, by_key.status_code)
        checked += 1
    assert checked >= 10  # the walk did walk


def test_the_issues_rules_for_evaluations(anonymous: TestClient) -> None:
    client = anonymous
    for role in Role:
        create_account(client, role.value, role)
    made = {}
    for role in (Role.ANALYST, Role.SYSTEM):
        response = client.post("/api/v1/evaluations", json=body(), headers=bearer(token(client, role.value, role)))
        assert response.status_code == 201, (role, response.text)
        made[role] = response.json()["id"]
        legacy = client.post("/avaliar", json=body(), headers=bearer(token(client, role.value, role)))
        assert legacy.status_code == 200, (role, legacy.text)
    for role in (Role.REVIEWER, Role.AUDITOR, Role.DPO, Role.ADMIN):
        response = client.post("/api/v1/evaluations", json=body(), headers=bearer(token(client, role.value, role)))
        assert response.status_code == 403, role


def test_public_routes_answer_without_a_credential(anonymous: TestClient) -> None:
    assert anonymous.get("/healthz").status_code == 200
    assert anonymous.get("/").status_code == 200  # the form
    assert anonymous.get("/session.js").status_code == 200
    assert anonymous.post("/api/v1/evaluations", json=body()).status_code == 401
    assert anonymous.post("/avaliar", json=body()).status_code == 401


@pytest.mark.parametrize(
    "header",
    ["Basic YWRtaW46YWRtaW4=", "Bearer", "Bearer ", "bearer not-a-token", "Token abc", "Bearer cek_made-up-key"],
)
def test_malformed_or_unknown_credentials_are_401(anonymous: TestClient, header: str) -> None:
    response = anonymous.post("/api/v1/evaluations", json=body(), headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_docs_can_be_turned_off(start_app: Callable[..., Any]) -> None:
    with start_app(as_role=None, docs_enabled=False) as client:
        for path in ("/docs", "/openapi.json", "/redoc"):
            assert client.get(path).status_code == 404, path
        assert missing_rules(app_of(client)) == []
