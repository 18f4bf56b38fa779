"""Who may call what: the one table of route × role rules, and the authentication behind it.

Every route the app serves has a rule in RULES, keyed by (method, path template); a route without
one is refused (403) and fails tests/evaluation_api/test_access.py, which walks `app.routes` against
every role. Per-record rules (an analyst reads only what they created) are in the routes, through
`can_read`. Credentials: `Authorization: Bearer <token or system key>`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Annotated, Final, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from evaluation_api.audit import trail as audit
from evaluation_api.config import Settings
from evaluation_api.errors import DatabaseUnavailable, EvaluationError
from evaluation_api.identity import accounts
from evaluation_api.identity.roles import Principal, Role
from evaluation_api.identity.tokens import InvalidToken, LocalTokens, OidcTokens, load_signing_key, unverified_issuer
from evaluation_api.observability.logs_and_metrics import request_id_var

logger = logging.getLogger(__name__)

PUBLIC: Final = "public"
Rule = frozenset[Role] | Literal["public"]
ANY_ROLE: Final[frozenset[Role]] = frozenset(Role)
_READERS = frozenset({Role.ANALYST, Role.SYSTEM, Role.REVIEWER, Role.AUDITOR, Role.DPO})
_CHANGERS = frozenset({Role.RISK, Role.ADMIN})
_CHANGE_READERS = frozenset({Role.RISK, Role.ADMIN, Role.AUDITOR})
_RUNNERS = frozenset({Role.ANALYST, Role.RISK, Role.ADMIN})

# (method, path template) → who may call it. docs/API.md, "Who may call what", mirrors this table.
RULES: dict[tuple[str, str], Rule] = {
    # Liveness, readiness and metrics: for the probes and Prometheus inside the cluster; the gateway
    # does not publish them (deploy/nginx/gateway.conf).
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    # The form's own limits (no customer data) and signing in.
    ("GET", "/api/v1/figures"): PUBLIC,
    ("POST", "/api/v1/auth/token"): PUBLIC,
    ("GET", "/api/v1/auth/me"): ANY_ROLE,
    # The API's description, when DOCS_ENABLED (off in production).
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
    # Evaluations: made by analysts and other systems; read by whoever made them, reviewers, auditors
    # and the DPO (per record: evaluation_api.identity.access.can_read).
    ("POST", "/api/v1/evaluations"): frozenset({Role.ANALYST, Role.SYSTEM}),
    ("POST", "/avaliar"): frozenset({Role.ANALYST, Role.SYSTEM}),
    ("GET", "/api/v1/evaluations"): _READERS,
    ("GET", "/api/v1/evaluations/{evaluation_id}"): _READERS,
    # The statement of a denied or review decision, for the customer: issued by whoever may read the
    # record (the analyst who made it, the DPO answering the customer, reviewers, auditors).
    ("GET", "/api/v1/evaluations/{evaluation_id}/statement"): _READERS,
    ("GET", "/api/v1/evaluations/{evaluation_id}/statement.pdf"): _READERS,
    # Human review of automated decisions (LGPD art. 20): requested by the analyst who made the
    # evaluation or by the DPO for the customer (per record: routes/reviews.py); the queue for reviewers
    # and auditors; decided by reviewers only (never on their own evaluations: four eyes).
    ("POST", "/api/v1/evaluations/{evaluation_id}/review-requests"): frozenset({Role.ANALYST, Role.DPO}),
    ("POST", "/api/v1/evaluations/{evaluation_id}/information-requests"): frozenset({Role.ANALYST, Role.DPO}),
    ("GET", "/api/v1/reviews"): frozenset({Role.REVIEWER, Role.AUDITOR}),
    ("GET", "/api/v1/reviews/{case_id}"): frozenset({Role.REVIEWER, Role.AUDITOR}),
    ("POST", "/api/v1/reviews/{case_id}/decision"): frozenset({Role.REVIEWER}),
    ("POST", "/api/v1/reviews/{case_id}/answer"): frozenset({Role.REVIEWER}),
    # Data-subject requests (LGPD art. 18): the data-protection officer.
    ("GET", "/api/v1/data-subjects/{customer_id}"): frozenset({Role.DPO}),
    ("POST", "/api/v1/data-subjects/{customer_id}/anonymize"): frozenset({Role.DPO}),
    # The audit trail.
    ("GET", "/api/v1/audit"): frozenset({Role.AUDITOR, Role.DPO}),
    # Portfolio runs: started by analysts, and by the risk team (and admins) as a backtest of a challenger
    # (per request, evaluation_api/portfolio_runs/routes.py: only they name a `challenger_id`, and only
    # with one); read (per run: the same module) by whoever started them and by auditors.
    ("POST", "/api/v1/portfolio-runs"): _RUNNERS,
    ("GET", "/api/v1/portfolio-runs"): _RUNNERS | {Role.AUDITOR},
    ("GET", "/api/v1/portfolio-runs/{run_id}"): _RUNNERS | {Role.AUDITOR},
    ("GET", "/api/v1/portfolio-runs/{run_id}/result"): _RUNNERS | {Role.AUDITOR},
    # Change control: the risk team (and admins) register policy versions, run challengers, promote
    # (never their own version: four eyes, in evaluation_api/releases/registry.py) and roll back;
    # auditors read it all.
    ("POST", "/api/v1/policy-versions"): _CHANGERS,
    ("GET", "/api/v1/policy-versions"): _CHANGE_READERS,
    ("GET", "/api/v1/policy-versions/{version_id}"): _CHANGE_READERS,
    ("POST", "/api/v1/model-versions"): _CHANGERS,
    ("GET", "/api/v1/model-versions"): _CHANGE_READERS,
    ("GET", "/api/v1/model-versions/{version_id}"): _CHANGE_READERS,
    ("POST", "/api/v1/challengers"): _CHANGERS,
    ("GET", "/api/v1/challengers"): _CHANGE_READERS,
    ("POST", "/api/v1/challengers/{challenger_id}/stop"): _CHANGERS,
    ("GET", "/api/v1/challengers/{challenger_id}/report"): _CHANGE_READERS,
    ("POST", "/api/v1/challengers/{challenger_id}/promote"): _CHANGERS,
    ("GET", "/api/v1/releases"): _CHANGE_READERS,
    ("POST", "/api/v1/releases/rollback"): _CHANGERS,
    # Accounts.
    ("GET", "/api/v1/accounts"): frozenset({Role.ADMIN}),
    ("POST", "/api/v1/accounts"): frozenset({Role.ADMIN}),
    ("POST", "/api/v1/accounts/{username}/disable"): frozenset({Role.ADMIN}),
    ("POST", "/api/v1/accounts/{username}/enable"): frozenset({Role.ADMIN}),
    ("POST", "/api/v1/accounts/{username}/password"): frozenset({Role.ADMIN}),
    ("POST", "/api/v1/accounts/{username}/keys"): frozenset({Role.ADMIN}),
    ("DELETE", "/api/v1/accounts/{username}/keys/{key_id}"): frozenset({Role.ADMIN}),
}

# Who reads every record, not only their own.
READS_ALL: Final = frozenset({Role.REVIEWER, Role.AUDITOR, Role.DPO})


def can_read(principal: Principal, created_by: str | None) -> bool:
    """Per record: its creator, and the roles that read every record."""
    return principal.has(*READS_ALL) or (created_by is not None and created_by == principal.subject)


def rule_for(method: str, path: str) -> Rule | None:
    return RULES.get(("GET" if method == "HEAD" else method, path))


# --- errors ------------------------------------------------------------------------------------------


class AuthError(EvaluationError):
    headers: dict[str, str] = {}  # noqa: RUF012 (replaced per instance)


class Unauthorized(AuthError):
    status_code = 401
    code = "unauthorized"
    message = "Autenticação necessária: envie um token ou uma chave de sistema (Authorization: Bearer)."

    def __init__(self, message: str | None = None, *, invalid: bool = False) -> None:
        super().__init__(message)
        # RFC 6750: a bad credential says so; a missing one only names the scheme.
        self.headers = {"WWW-Authenticate": 'Bearer error="invalid_token"' if invalid else "Bearer"}


class Forbidden(AuthError):
    status_code = 403
    code = "forbidden"
    message = "Sua conta não tem permissão para esta operação."


def install_error_handler(app: FastAPI) -> None:
    @app.exception_handler(AuthError)
    async def _auth_error(request: Request, exc: AuthError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)


# --- authentication ----------------------------------------------------------------------------------


class Authenticator:
    """Turns a credential into a Principal. Tokens are verified in process (the roles are claims); a
    system key is looked up by its SHA-256 digest, and the answer kept for AUTH_KEY_CACHE_TTL_S."""

    MAX_CACHED_KEYS = 10_000

    def __init__(self, engine: Engine, local: LocalTokens, oidc: OidcTokens | None, key_cache_ttl_s: float) -> None:
        self.engine = engine
        self.local = local
        self.oidc = oidc
        self.key_cache_ttl_s = key_cache_ttl_s
        self._keys: dict[str, tuple[Principal | None, float]] = {}

    async def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthorized()
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise Unauthorized()
        if credential.startswith(accounts.KEY_PREFIX):
            return await self._by_key(credential)
        try:
            if self.oidc is not None and unverified_issuer(credential) == self.oidc.issuer:
                return await run_in_threadpool(self.oidc.verify, credential)
            return self.local.verify(credential)
        except InvalidToken as exc:
            logger.info("refused a token: %s", exc)
            raise Unauthorized("Token inválido ou expirado. Entre novamente.", invalid=True) from None

    async def _by_key(self, key: str) -> Principal:
        digest = accounts.digest_of(key)
        now = time.monotonic()
        cached = self._keys.get(digest)
        if cached is not None and cached[1] > now:
            principal = cached[0]
        else:
            try:
                principal = await run_in_threadpool(accounts.principal_for_key, self.engine, digest)
            except SQLAlchemyError:
                raise DatabaseUnavailable("Não foi possível verificar a chave agora.", retry_after_s=2) from None
            if len(self._keys) >= self.MAX_CACHED_KEYS:
                self._keys.clear()  # bounded: made-up keys cannot grow it without end
            self._keys[digest] = (principal, now + self.key_cache_ttl_s)
        if principal is None:
            raise Unauthorized("Chave inválida ou revogada.", invalid=True)
        return principal


@dataclass
class Identity:
    """What the routes need to authenticate and sign in; one per app, made in its lifespan."""

    settings: Settings
    engine: Engine
    tokens: LocalTokens
    authenticator: Authenticator

    @classmethod
    def start(cls, settings: Settings, engine: Engine) -> Identity:
        tokens = LocalTokens(
            load_signing_key(settings),
            issuer=settings.auth_issuer,
            audience=settings.auth_audience,
            ttl_s=settings.auth_token_ttl_s,
        )
        oidc = OidcTokens(settings) if settings.oidc_issuer else None
        return cls(settings, engine, tokens, Authenticator(engine, tokens, oidc, settings.auth_key_cache_ttl_s))


# --- the dependencies --------------------------------------------------------------------------------


async def authorize(request: Request) -> Principal | None:
    """Every route's gate (an app-wide dependency): its rule from RULES, then the caller's roles.
    Public routes answer None; the others the Principal, or 401/403."""
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    rule = rule_for(request.method, path) if isinstance(path, str) else None
    if rule is None:
        logger.error("no access rule for %s %s: refused", request.method, path)
        raise Forbidden()
    if rule == PUBLIC:
        return None
    identity: Identity = request.app.state.identity
    principal = await identity.authenticator.authenticate(request.headers.get("authorization"))
    if principal.roles.isdisjoint(rule):
        raise Forbidden()
    return principal


async def current_principal(principal: Annotated[Principal | None, Depends(authorize)]) -> Principal:
    if principal is None:  # a public route asked who is calling: a mistake in RULES or the route
        raise Unauthorized()
    return principal


def audit_context(request: Request, principal: Principal | None) -> audit.Context:
    client = request.client.host if request.client is not None else None
    return audit.Context(
        actor=principal.subject if principal is not None else "anonymous",
        actor_roles=principal.roles_text if principal is not None else "-",
        request_id=request_id_var.get(),
        client_address=client,
    )


PrincipalDep = Annotated[Principal, Depends(current_principal)]
