"""Account management over the API (role admin): each change is an audit event."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from fastapi import APIRouter, Path, Request, status
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from evaluation_api.deps import IdentityDep
from evaluation_api.errors import EvaluationError, InvalidInput
from evaluation_api.evaluations.schemas import ErrorBody
from evaluation_api.identity import accounts, passwords
from evaluation_api.identity.access import PrincipalDep, audit_context
from evaluation_api.identity.roles import Role

router = APIRouter(prefix="/api/v1/accounts", tags=["accounts"])
T = TypeVar("T")

Username = Path(max_length=64, description="The account's name")


class AccountCreate(BaseModel):
    username: str = Field(max_length=64)
    role: Role
    password: str | None = Field(None, max_length=256, description="Required for every role but `system`")


class AccountPublic(BaseModel):
    username: str
    role: str
    disabled: bool
    locked_until: datetime | None
    created_at: datetime
    created_by: str
    active_keys: int


class PasswordReset(BaseModel):
    password: str = Field(max_length=256)


class KeyPublic(BaseModel):
    id: str
    key: str = Field(description="Shown once: only its SHA-256 digest is stored")


class Conflict(EvaluationError):
    status_code = 409
    code = "conflict"


class AccountMissing(EvaluationError):
    status_code = 404
    code = "not_found"
    message = "Conta não encontrada."


async def _run(function: Callable[..., T], *args: Any) -> T:
    try:
        return await run_in_threadpool(function, *args)
    except accounts.AccountExists as exc:
        raise Conflict(str(exc)) from None
    except accounts.AccountNotFound as exc:
        raise AccountMissing(str(exc)) from None
    except passwords.WeakPassword as exc:
        raise InvalidInput([{"field": "password", "rule": "password_policy", "message": str(exc)}]) from None
    except accounts.AccountError as exc:
        raise InvalidInput([{"field": "username", "rule": "account", "message": str(exc)}]) from None


def _public(info: accounts.AccountInfo) -> AccountPublic:
    return AccountPublic(**info.__dict__)


ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody},
    409: {"model": ErrorBody},
    422: {"model": ErrorBody},
}


@router.get("", response_model=list[AccountPublic])
async def list_accounts(principal: PrincipalDep, identity: IdentityDep) -> list[AccountPublic]:
    return [_public(info) for info in await _run(accounts.list_accounts, identity.engine)]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=AccountPublic, responses=ERRORS)
async def create_account(
    body: AccountCreate, request: Request, principal: PrincipalDep, identity: IdentityDep
) -> AccountPublic:
    info = await _run(
        accounts.create_account,
        identity.engine,
        audit_context(request, principal),
        body.username,
        body.role.value,
        body.password,
    )
    return _public(info)


@router.post("/{username}/disable", status_code=status.HTTP_204_NO_CONTENT, responses=ERRORS)
async def disable(request: Request, principal: PrincipalDep, identity: IdentityDep, username: str = Username) -> None:
    await _run(accounts.set_disabled, identity.engine, audit_context(request, principal), username, True)


@router.post("/{username}/enable", status_code=status.HTTP_204_NO_CONTENT, responses=ERRORS)
async def enable(request: Request, principal: PrincipalDep, identity: IdentityDep, username: str = Username) -> None:
    await _run(accounts.set_disabled, identity.engine, audit_context(request, principal), username, False)


@router.post("/{username}/password", status_code=status.HTTP_204_NO_CONTENT, responses=ERRORS)
async def reset_password(
    body: PasswordReset, request: Request, principal: PrincipalDep, identity: IdentityDep, username: str = Username
) -> None:
    await _run(accounts.reset_password, identity.engine, audit_context(request, principal), username, body.password)


@router.post("/{username}/keys", status_code=status.HTTP_201_CREATED, response_model=KeyPublic, responses=ERRORS)
async def create_key(
    request: Request, principal: PrincipalDep, identity: IdentityDep, username: str = Username
) -> KeyPublic:
    key_id, key = await _run(
        accounts.create_key, identity.engine, audit_context(request, principal), username, Role.SYSTEM.value
    )
    return KeyPublic(id=key_id, key=key)


@router.delete("/{username}/keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT, responses=ERRORS)
async def revoke_key(
    request: Request,
    principal: PrincipalDep,
    identity: IdentityDep,
    username: str = Username,
    key_id: str = Path(max_length=36),
) -> None:
    await _run(accounts.revoke_key, identity.engine, audit_context(request, principal), key_id, username)
