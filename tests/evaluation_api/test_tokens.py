"""Tokens: the API's own (forgeries refused) and a bank identity provider's (OIDC, keys from a JWKS
served by the test on a free 127.0.0.1 port, including a key rotation)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.algorithms import RSAAlgorithm

from evaluation_api.identity.roles import Role
from evaluation_api.identity.tokens import OidcTokens
from tests.utils.evaluations import TestClient, body
from tests.utils.identity import bearer, create_account, identity_of

# --- the API's own tokens ----------------------------------------------------------------------------


def claims(client: TestClient, **overrides: Any) -> dict[str, Any]:
    tokens = identity_of(client).tokens
    now = int(time.time())
    values: dict[str, Any] = {
        "iss": tokens.issuer,
        "aud": tokens.audience,
        "sub": "analyst",
        "name": "analyst",
        "roles": ["analyst"],
        "iat": now,
        "exp": now + 300,
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not ...}


def signing_key(client: TestClient) -> bytes:
    key: bytes = identity_of(client).tokens._key
    return key


def assert_refused(client: TestClient, token: str) -> None:
    response = client.post("/api/v1/evaluations", json=body(), headers=bearer(token))
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert response.json()["error"] == "unauthorized"
    me = client.get("/api/v1/auth/me", headers=bearer(token))
    assert me.status_code == 401


@pytest.fixture
def anonymous(start_app: Callable[..., Any]) -> Iterator[TestClient]:
    with start_app(as_role=None) as client:
        create_account(client, "analyst", Role.ANALYST)
        yield client


def test_a_well_made_token_is_accepted(anonymous: TestClient) -> None:
    token = jwt.encode(claims(anonymous), signing_key(anonymous), algorithm="HS256")
    response = anonymous.post("/api/v1/evaluations", json=body(), headers=bearer(token))
    assert response.status_code == 201, response.text


def test_a_bad_signature_is_401(anonymous: TestClient) -> None:
    assert_refused(anonymous, jwt.encode(claims(anonymous), b"another-key-" * 4, algorithm="HS256"))


def test_a_token_with_a_changed_role_is_401(anonymous: TestClient) -> None:
    good = jwt.encode(claims(anonymous), signing_key(anonymous), algorithm="HS256")
    header, _, signature = good.split(".")
    forged_payload = jwt.utils.base64url_encode(json.dumps(claims(anonymous, roles=["admin"])).encode()).decode()
    assert_refused(anonymous, f"{header}.{forged_payload}.{signature}")


def test_alg_none_is_401(anonymous: TestClient) -> None:
    unsigned = jwt.encode(claims(anonymous, roles=["admin"]), None, algorithm="none")
    assert unsigned.endswith(".")
    assert_refused(anonymous, unsigned)
    # And "none" spelled otherwise, built by hand.
    head = jwt.utils.base64url_encode(b'{"alg":"NoNe","typ":"JWT"}').decode()
    payload = jwt.utils.base64url_encode(json.dumps(claims(anonymous)).encode()).decode()
    assert_refused(anonymous, f"{head}.{payload}.")


def test_an_expired_token_is_401(anonymous: TestClient) -> None:
    now = int(time.time())
    assert_refused(
        anonymous,
        jwt.encode(claims(anonymous, iat=now - 3600, exp=now - 60), signing_key(anonymous), algorithm="HS256"),
    )


def test_another_audience_or_issuer_is_401(anonymous: TestClient) -> None:
    key = signing_key(anonymous)
    assert_refused(anonymous, jwt.encode(claims(anonymous, aud="another-api"), key, algorithm="HS256"))
    assert_refused(anonymous, jwt.encode(claims(anonymous, aud=...), key, algorithm="HS256"))
    assert_refused(anonymous, jwt.encode(claims(anonymous, iss="someone-else"), key, algorithm="HS256"))
    assert_refused(anonymous, jwt.encode(claims(anonymous, exp=...), key, algorithm="HS256"))


def test_an_unknown_role_claim_is_401(anonymous: TestClient) -> None:
    key = signing_key(anonymous)
    assert_refused(anonymous, jwt.encode(claims(anonymous, roles=["root"]), key, algorithm="HS256"))
    assert_refused(anonymous, jwt.encode(claims(anonymous, roles="analyst"), key, algorithm="HS256"))


def test_the_token_lifetime_is_a_setting(start_app: Callable[..., Any]) -> None:
    with start_app(as_role=None, auth_token_ttl_s=120) as client:
        create_account(client, "analyst", Role.ANALYST)
        response = client.post("/api/v1/auth/token", data={"username": "analyst", "password": "senha-de-teste-123"})
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["token_type"] == "bearer" and answer["expires_in"] == 120
        decoded = jwt.decode(answer["access_token"], options={"verify_signature": False})
        assert decoded["exp"] - decoded["iat"] == 120
        assert decoded["roles"] == ["analyst"]


# --- OpenID Connect ----------------------------------------------------------------------------------


class IdentityProvider:
    """An OIDC issuer's discovery document and JWKS, served on a free 127.0.0.1 port; counts fetches."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.fetches = 0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    data: dict[str, Any] = {"issuer": provider.issuer, "jwks_uri": provider.issuer + "/jwks"}
                elif self.path == "/jwks":
                    provider.fetches += 1
                    data = {"keys": [provider.public_jwk(kid) for kid in provider.keys]}
                else:
                    self.send_error(404)
                    return
                payload = json.dumps(data).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add_key(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def public_jwk(self, kid: str) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.keys[kid].public_key()))
        return {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}

    def token(self, kid: str, **overrides: Any) -> str:
        now = int(time.time())
        values: dict[str, Any] = {
            "iss": self.issuer,
            "aud": "evaluation-api",
            "sub": "a1b2c3",
            "preferred_username": "maria.souza",
            "realm_access": {"roles": ["offline_access", "analyst"]},
            "iat": now,
            "exp": now + 300,
        }
        values.update(overrides)
        return jwt.encode(values, self.keys[kid], algorithm="RS256", headers={"kid": kid})


@pytest.fixture
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider()
    provider.add_key("key-1")
    provider.thread.start()
    try:
        yield provider
    finally:
        provider.server.shutdown()
        provider.server.server_close()


@pytest.fixture
def oidc_client(
    start_app: Callable[..., Any], idp: IdentityProvider, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    monkeypatch.setattr(OidcTokens, "MIN_REFRESH_INTERVAL_S", 0.0)  # the rotation below comes at once
    with start_app(
        as_role=None, oidc_issuer=idp.issuer, oidc_audience="evaluation-api", oidc_roles_claim="realm_access.roles"
    ) as client:
        yield client


def test_an_identity_providers_token_is_accepted_with_its_roles(oidc_client: TestClient, idp: IdentityProvider) -> None:
    me = oidc_client.get("/api/v1/auth/me", headers=bearer(idp.token("key-1")))
    assert me.status_code == 200, me.text
    assert me.json() == {"username": "oidc:a1b2c3", "name": "maria.souza", "roles": ["analyst"]}
    created = oidc_client.post("/api/v1/evaluations", json=body(), headers=bearer(idp.token("key-1")))
    assert created.status_code == 201, created.text
    # Keys are fetched once, not per request.
    for _ in range(5):
        assert oidc_client.get("/api/v1/auth/me", headers=bearer(idp.token("key-1"))).status_code == 200
    assert idp.fetches == 1


def test_a_key_rotation_is_followed(oidc_client: TestClient, idp: IdentityProvider) -> None:
    assert oidc_client.get("/api/v1/auth/me", headers=bearer(idp.token("key-1"))).status_code == 200
    assert idp.fetches == 1
    # The provider rotates: a new key signs, the old one is withdrawn.
    idp.add_key("key-2")
    del idp.keys["key-1"]
    assert oidc_client.get("/api/v1/auth/me", headers=bearer(idp.token("key-2"))).status_code == 200
    assert idp.fetches == 2  # the unknown kid made it fetch again


def test_identity_provider_tokens_are_checked_like_ours(oidc_client: TestClient, idp: IdentityProvider) -> None:
    assert_refused(oidc_client, idp.token("key-1", aud="another-api"))
    assert_refused(oidc_client, idp.token("key-1", exp=int(time.time()) - 120))
    assert_refused(oidc_client, idp.token("key-1", realm_access={"roles": ["offline_access"]}))  # no role of ours
    # Signed by a key the provider never published, under a kid it did publish.
    stranger = IdentityProvider()
    stranger.add_key("key-1")
    stranger.issuer = idp.issuer
    assert_refused(oidc_client, stranger.token("key-1"))
    stranger.server.server_close()
    # HS256 under the provider's kid (the algorithm-confusion attack) is refused before any key is used.
    public_pem = idp.keys["key-1"].public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    confused_claims = {
        "iss": idp.issuer,
        "aud": "evaluation-api",
        "sub": "x",
        "exp": int(time.time()) + 60,
        "realm_access": {"roles": ["admin"]},
    }
    payload = json.dumps(confused_claims).encode()
    confused = jwt.api_jws.PyJWS().encode(payload, public_pem[-48:], algorithm="HS256", headers={"kid": "key-1"})
    assert_refused(oidc_client, confused)
