"""Signed tokens (PyJWT): the API's own (HS256, short-lived, the role a claim: verified without a
database round trip) and, when an issuer is configured, the access tokens of a bank's OpenID Connect
identity provider (keys from its JWKS, cached, refreshed on an unknown `kid`)."""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from evaluation_api.config import Settings
from evaluation_api.identity.roles import ROLES, Principal, Role
from evaluation_api.secret_files import write_secret_file

logger = logging.getLogger(__name__)

ALGORITHM = "HS256"


class InvalidToken(Exception):
    """The credential is not acceptable (bad signature, expired, other audience or issuer, malformed)."""


def load_signing_key(settings: Settings) -> bytes:
    """AUTH_SIGNING_KEY, else the key file (created with 32 random bytes, mode 0600, on first start)."""
    if settings.auth_signing_key is not None:
        return settings.auth_signing_key.get_secret_value().encode()
    path: Path = settings.auth_signing_key_file
    if not path.exists():
        # Another process starting at once may make it first: then its key is used (read below).
        write_secret_file(path, secrets.token_urlsafe(48) + "\n", replace=False)
    key = path.read_text().strip()
    if len(key) < 32:
        raise ValueError(f"the signing key in {path} is shorter than 32 characters")
    return key.encode()


@dataclass(frozen=True)
class Issued:
    access_token: str
    expires_in: int


class LocalTokens:
    """The API's own tokens: issuer, audience and lifetime from settings."""

    def __init__(self, key: bytes, *, issuer: str, audience: str, ttl_s: int) -> None:
        self._key = key
        self.issuer = issuer
        self.audience = audience
        self.ttl_s = ttl_s

    def issue(self, principal: Principal) -> Issued:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": principal.subject,
            "name": principal.name,
            "roles": sorted(principal.roles),
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl_s,
            "jti": uuid.uuid4().hex,
        }
        return Issued(jwt.encode(claims, self._key, algorithm=ALGORITHM), self.ttl_s)

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "aud", "iss"]},
                leeway=5,
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from None
        roles = claims.get("roles")
        if not isinstance(roles, list) or not roles or not all(r in ROLES for r in roles):
            raise InvalidToken("roles")
        return Principal(
            subject=str(claims["sub"]),
            name=str(claims.get("name") or claims["sub"]),
            roles=frozenset(Role(r) for r in roles),
            via="token",
        )


def _claim(claims: dict[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


class OidcTokens:
    """Access tokens of an OpenID Connect issuer. The JWKS is fetched when first needed, kept for
    OIDC_JWKS_CACHE_S, and fetched again when a token names a `kid` it does not hold (a key rotation),
    at most once every few seconds whatever the tokens say: never per request. Blocking I/O: call
    `verify` off the event loop."""

    MIN_REFRESH_INTERVAL_S = 10.0

    def __init__(self, settings: Settings, *, timeout_s: float = 3.0) -> None:
        assert settings.oidc_issuer and settings.oidc_audience
        self.issuer = settings.oidc_issuer
        self.audience = settings.oidc_audience
        self.roles_claim = settings.oidc_roles_claim
        self.username_claim = settings.oidc_username_claim
        self.algorithms = list(settings.oidc_algorithms)
        self.cache_s = settings.oidc_jwks_cache_s
        self._jwks_url = settings.oidc_jwks_url
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")

    def _get_json(self, url: str) -> Any:
        if not url.startswith(("https://", "http://")):
            raise InvalidToken("jwks url")
        with urllib.request.urlopen(url, timeout=self._timeout_s) as response:
            return json.loads(response.read(1_000_000))

    def _jwks_location(self) -> str:
        if self._jwks_url is None:
            document = self._get_json(self.issuer.rstrip("/") + "/.well-known/openid-configuration")
            self._jwks_url = str(document["jwks_uri"])
        return self._jwks_url

    def _refresh(self) -> None:
        keys: dict[str, jwt.PyJWK] = {}
        for data in jwt.PyJWKSet.from_dict(self._get_json(self._jwks_location())).keys:
            if data.key_id:
                keys[data.key_id] = data
        self._keys = keys
        self._fetched_at = time.monotonic()
        logger.info("OIDC keys fetched: %d key(s)", len(keys))

    def _key(self, kid: str) -> jwt.PyJWK:
        with self._lock:
            age = time.monotonic() - self._fetched_at
            if age > self.cache_s or (kid not in self._keys and age > self.MIN_REFRESH_INTERVAL_S):
                try:
                    self._refresh()
                except (OSError, ValueError, KeyError, jwt.PyJWTError) as exc:
                    logger.warning("could not fetch the OIDC keys: %s", type(exc).__name__)
            key = self._keys.get(kid)
        if key is None:
            raise InvalidToken("unknown kid")
        return key

    def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from None
        kid = header.get("kid")
        if not isinstance(kid, str) or header.get("alg") not in self.algorithms:
            raise InvalidToken("header")
        key = self._key(kid)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "sub", "aud", "iss"]},
                leeway=30,
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from None
        raw = _claim(claims, self.roles_claim)
        values = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
        roles = frozenset(Role(v) for v in values if isinstance(v, str) and v in ROLES)
        if not roles:
            raise InvalidToken("no role")
        name = claims.get(self.username_claim)
        return Principal(
            subject=f"oidc:{claims['sub']}"[:128],
            name=str(name if isinstance(name, str) and name else claims["sub"])[:128],
            roles=roles,
            via="oidc",
        )


def unverified_issuer(token: str) -> str | None:
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    issuer = claims.get("iss")
    return issuer if isinstance(issuer, str) else None
