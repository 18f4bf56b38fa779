"""POST /api/v1/auth/token (sign in: the OAuth2 password form) and GET /api/v1/auth/me."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from evaluation_api.deps import IdentityDep
from evaluation_api.evaluations.schemas import ErrorBody
from evaluation_api.identity import accounts
from evaluation_api.identity.access import PrincipalDep, Unauthorized, audit_context

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


class TokenPublic(BaseModel):
    access_token: str
    token_type: str = Field("bearer", description="Always `bearer`")
    expires_in: int = Field(description="Seconds until the token expires")


class Me(BaseModel):
    username: str = Field(description="The account (or, for the identity provider's users, `oidc:<sub>`)")
    name: str
    roles: list[str]


@router.post(
    "/token",
    response_model=TokenPublic,
    responses={401: {"model": ErrorBody}, 429: {"model": ErrorBody, "description": "Locked (Retry-After)"}},
)
async def token(
    request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()], identity: IdentityDep
) -> TokenPublic | JSONResponse:
    """Sign in with a name and password (form-encoded); answers a short-lived bearer token. Wrong name
    or password: 401, without saying which; after AUTH_MAX_FAILED_LOGINS in a row: 429 for a while."""
    settings = identity.settings
    login = await run_in_threadpool(
        accounts.sign_in,
        identity.engine,
        audit_context(request, None),
        form.username.strip().lower()[:128],
        form.password,
        max_failed=settings.auth_max_failed_logins,
        lockout_s=settings.auth_lockout_s,
    )
    if login.principal is not None:
        issued = identity.tokens.issue(login.principal)
        return TokenPublic(access_token=issued.access_token, expires_in=issued.expires_in)
    if login.locked_until is not None:
        seconds = max(1, math.ceil((login.locked_until - datetime.now(UTC)).total_seconds()))
        return JSONResponse(
            {
                "error": "too_many_attempts",
                "message": "Muitas tentativas sem sucesso. Aguarde alguns minutos e tente de novo.",
            },
            status_code=429,
            headers={"Retry-After": str(seconds)},
        )
    raise Unauthorized("Usuário ou senha incorretos.", invalid=True)


@router.get("/me", response_model=Me)
async def me(principal: PrincipalDep) -> Me:
    """Who the credential belongs to (the form shows the name in its header)."""
    return Me(username=principal.subject, name=principal.name, roles=sorted(principal.roles))
