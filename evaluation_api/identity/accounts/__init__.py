"""Local accounts and system keys: the tables, what an administrator does with them, and the command line.

    python -m evaluation_api.identity.accounts create NAME --role ROLE --password-stdin
    python -m evaluation_api.identity.accounts create-key NAME --role system      # the key is the last line printed
    python -m evaluation_api.identity.accounts list | disable NAME | enable NAME | reset-password NAME --password-stdin
    python -m evaluation_api.identity.accounts revoke-key KEY_ID

The command line uses DATABASE_URL (default: the SQLite file `make run` uses) and applies the
migrations first. Every change is an audit event. A system key is stored as its SHA-256 digest only:
the key is random (256 bits), so a fast digest is safe, and checking it costs nothing per request.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Boolean, DateTime, Engine, ForeignKey, Integer, String, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from evaluation_api.audit import trail as audit
from evaluation_api.database import Base, as_utc
from evaluation_api.identity import passwords
from evaluation_api.identity.roles import ROLES, Principal, Role

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{2,63}$")
KEY_PREFIX = "cek_"  # "credit eligibility key": tells a key from a token at a glance, and to secret scanners


class AccountRow(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(String(255))  # none for system accounts
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(128))


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(36), ForeignKey("accounts.id"), index=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 of the key, hex
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AccountError(ValueError):
    """A change that cannot be made; the message says why (pt-BR, shown to the operator)."""


class AccountExists(AccountError):
    pass


class AccountNotFound(AccountError):
    pass


@dataclass(frozen=True)
class AccountInfo:
    username: str
    role: str
    disabled: bool
    locked_until: datetime | None
    created_at: datetime
    created_by: str
    active_keys: int


@dataclass(frozen=True)
class Login:
    """The outcome of a sign-in: a principal, or why not (never said to the caller beyond 401/429)."""

    principal: Principal | None
    locked_until: datetime | None = None


def digest_of(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def principal_of(username: str, role: str, via: str) -> Principal:
    return Principal(subject=username, name=username, roles=frozenset({Role(role)}), via=via)


def _check_name(username: str) -> str:
    if not USERNAME.match(username):
        raise AccountError(
            "Nome de conta inválido: de 3 a 64 caracteres, letras minúsculas sem acento, números, ponto, hífen ou "
            "sublinhado, começando por letra ou número."
        )
    return username


def _check_role(role: str) -> Role:
    if role not in ROLES:
        raise AccountError(f"Papel desconhecido: {role}. Papéis: {', '.join(ROLES)}.")
    return Role(role)


def _find(connection: Any, username: str) -> AccountRow | None:
    row = connection.execute(select(AccountRow).where(AccountRow.username == username)).first()
    return AccountRow(**row._mapping) if row is not None else None


def create_account(
    engine: Engine, context: audit.Context, username: str, role: str, password: str | None
) -> AccountInfo:
    """A new account. A password is required for every role but `system` (which signs in with keys)."""
    _check_name(username)
    checked_role = _check_role(role)
    if password is None and checked_role is not Role.SYSTEM:
        raise AccountError("Informe uma senha para a conta.")
    password_hash = passwords.hash_password(password) if password is not None else None
    now = datetime.now(UTC)
    values = {
        "id": str(uuid.uuid4()),
        "username": username,
        "role": checked_role.value,
        "password_hash": password_hash,
        "disabled": False,
        "failed_logins": 0,
        "locked_until": None,
        "created_at": now,
        "created_by": context.actor,
    }
    try:
        with engine.begin() as connection:
            connection.execute(insert(AccountRow), [values])
            audit.append(
                connection,
                audit.event(
                    context,
                    "account.create",
                    target_type="account",
                    target_id=username,
                    details={"role": checked_role.value},
                ),
            )
    except IntegrityError:
        raise AccountExists(f"A conta {username} já existe.") from None
    return AccountInfo(username, checked_role.value, False, None, now, context.actor, 0)


def create_key(engine: Engine, context: audit.Context, username: str, role: str) -> tuple[str, str]:
    """A new key for `username` (created as a `role` account without a password if it does not exist).
    Returns (key id, key): the key is shown once and only its digest is kept."""
    _check_name(username)
    checked_role = _check_role(role)
    with engine.connect() as connection:
        account = _find(connection, username)
    if account is None:
        create_account(engine, context, username, checked_role.value, None)
        with engine.connect() as connection:
            account = _find(connection, username)
        assert account is not None
    elif account.role != checked_role.value:
        raise AccountError(f"A conta {username} tem o papel {account.role}, não {checked_role.value}.")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    key_id = str(uuid.uuid4())
    with engine.begin() as connection:
        connection.execute(
            insert(ApiKeyRow),
            [{"id": key_id, "account_id": account.id, "digest": digest_of(key), "created_at": datetime.now(UTC)}],
        )
        audit.append(
            connection,
            audit.event(
                context, "api_key.create", target_type="account", target_id=username, details={"key_id": key_id}
            ),
        )
    return key_id, key


def revoke_key(engine: Engine, context: audit.Context, key_id: str, username: str | None = None) -> None:
    """Revoke an active key (of `username`, when given). Its account stops being served within the cache TTL."""
    query = update(ApiKeyRow).where(ApiKeyRow.id == key_id, ApiKeyRow.revoked_at.is_(None))
    if username is not None:
        query = query.where(ApiKeyRow.account_id.in_(select(AccountRow.id).where(AccountRow.username == username)))
    with engine.begin() as connection:
        done = connection.execute(query.values(revoked_at=datetime.now(UTC)))
        if done.rowcount == 0:
            raise AccountNotFound(f"Nenhuma chave ativa com o código {key_id}.")
        audit.append(connection, audit.event(context, "api_key.revoke", target_type="api_key", target_id=key_id))


def list_accounts(engine: Engine) -> list[AccountInfo]:
    with engine.connect() as connection:
        accounts = [
            AccountRow(**row._mapping) for row in connection.execute(select(AccountRow).order_by(AccountRow.username))
        ]
        keys: dict[str, int] = {}
        for row in connection.execute(select(ApiKeyRow.account_id).where(ApiKeyRow.revoked_at.is_(None))):
            keys[row.account_id] = keys.get(row.account_id, 0) + 1
    return [
        AccountInfo(
            a.username,
            a.role,
            a.disabled,
            as_utc(a.locked_until),
            as_utc(a.created_at) or a.created_at,
            a.created_by,
            keys.get(a.id, 0),
        )
        for a in accounts
    ]


def set_disabled(engine: Engine, context: audit.Context, username: str, disabled: bool) -> None:
    """Disable (or enable) an account: its password and keys stop working (keys within the cache TTL,
    tokens already issued at their expiry)."""
    with engine.begin() as connection:
        done = connection.execute(update(AccountRow).where(AccountRow.username == username).values(disabled=disabled))
        if done.rowcount == 0:
            raise AccountNotFound(f"A conta {username} não existe.")
        action = "account.disable" if disabled else "account.enable"
        audit.append(connection, audit.event(context, action, target_type="account", target_id=username))


def reset_password(engine: Engine, context: audit.Context, username: str, password: str) -> None:
    """A new password; it also lifts a lockout."""
    password_hash = passwords.hash_password(password)
    with engine.begin() as connection:
        done = connection.execute(
            update(AccountRow)
            .where(AccountRow.username == username, AccountRow.role != Role.SYSTEM.value)
            .values(password_hash=password_hash, failed_logins=0, locked_until=None)
        )
        if done.rowcount == 0:
            raise AccountNotFound(f"A conta {username} não existe ou não entra com senha.")
        audit.append(
            connection, audit.event(context, "account.password_reset", target_type="account", target_id=username)
        )


def sign_in(
    engine: Engine, context: audit.Context, username: str, password: str, *, max_failed: int, lockout_s: int
) -> Login:
    """Check a password, count failures and lock after `max_failed` in a row; every attempt is an event.
    Unknown names cost a hash verification too (no timing difference)."""
    now = datetime.now(UTC)
    with engine.connect() as connection:
        account = _find(connection, username) if USERNAME.match(username) else None
    locked_until = as_utc(account.locked_until) if account is not None else None
    if account is not None and locked_until is not None and locked_until > now:
        passwords.verify(None, password)  # same cost as any other answer
        audit.record(
            engine,
            audit.event(
                context,
                "auth.login",
                target_type="account",
                target_id=username,
                outcome="denied",
                details={"reason": "locked"},
            ),
        )
        return Login(None, locked_until)
    usable = account is not None and not account.disabled and account.password_hash is not None
    matched = passwords.verify(account.password_hash if usable and account is not None else None, password)
    with engine.begin() as connection:
        if account is None:
            audit.append(
                connection,
                audit.event(
                    context,
                    "auth.login",
                    target_type="account",
                    target_id=username[:128],
                    outcome="failure",
                    details={"reason": "unknown_account"},
                ),
            )
            return Login(None)
        if not matched:
            failures = account.failed_logins + 1
            lock = now + timedelta(seconds=lockout_s) if failures >= max_failed else None
            connection.execute(
                update(AccountRow)
                .where(AccountRow.id == account.id)
                .values(failed_logins=0 if lock else failures, locked_until=lock)
            )
            reason = "disabled" if account.disabled else "no_password" if account.password_hash is None else "password"
            audit.append(
                connection,
                audit.event(
                    context,
                    "auth.login",
                    target_type="account",
                    target_id=username,
                    outcome="failure",
                    details={"reason": reason, "locked": lock is not None},
                ),
            )
            return Login(None, lock)
        values: dict[str, Any] = {"failed_logins": 0, "locked_until": None}
        if account.password_hash is not None and passwords.needs_rehash(account.password_hash):
            values["password_hash"] = passwords.hash_password(password)
        connection.execute(update(AccountRow).where(AccountRow.id == account.id).values(**values))
        audit.append(
            connection,
            audit.event(
                audit.Context(username, account.role, context.request_id, context.client_address),
                "auth.login",
                target_type="account",
                target_id=username,
            ),
        )
    return Login(principal_of(account.username, account.role, "token"))


def principal_for_key(engine: Engine, digest: str) -> Principal | None:
    """The account behind a key's digest, if the key is active and its account enabled."""
    query = (
        select(AccountRow.username, AccountRow.role)
        .join(ApiKeyRow, ApiKeyRow.account_id == AccountRow.id)
        .where(ApiKeyRow.digest == digest, ApiKeyRow.revoked_at.is_(None), AccountRow.disabled.is_(False))
    )
    with engine.connect() as connection:
        row = connection.execute(query).first()
    return principal_of(row.username, row.role, "key") if row is not None else None


def ensure_admin(engine: Engine, username: str = "admin") -> str | None:
    """Create `username` (role admin) with a random password when no admin exists; return the password
    (to be shown once), or None when there was one already."""
    with engine.connect() as connection:
        exists = connection.execute(select(AccountRow.id).where(AccountRow.role == Role.ADMIN.value)).first()
    if exists is not None:
        return None
    password = secrets.token_urlsafe(15)  # 20 characters, 120 bits
    context = audit.Context("make-run", "-", "-", None)
    try:
        create_account(engine, context, username, Role.ADMIN.value, password)
    except AccountExists:
        return None
    return password
