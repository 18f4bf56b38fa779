"""Password hashing (Argon2id, argon2-cffi) and the password rule.

Hashes are Argon2id with argon2-cffi's defaults (RFC 9106's low-memory profile); a hash made with
older parameters is re-hashed on the next successful sign-in. Passwords are never logged.
"""

from __future__ import annotations

import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 12
MAX_LENGTH = 256  # Argon2 takes any length; a bound keeps a megabyte "password" from costing anything

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the account does not exist, so that an unknown name costs as long as a wrong
    password. Made on first need, not at import (an Argon2 hash costs tens of milliseconds)."""
    return _hasher.hash("not-a-password-of-anyone-0000")


class WeakPassword(ValueError):
    """The password breaks the rule; the message (pt-BR) says which part."""


def check_rule(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"A senha precisa ter pelo menos {MIN_LENGTH} caracteres.")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"A senha pode ter no máximo {MAX_LENGTH} caracteres.")
    if password.strip() != password or not password.isprintable():
        raise WeakPassword("A senha não pode começar ou terminar com espaço nem ter caracteres de controle.")


def hash_password(password: str) -> str:
    check_rule(password)
    return _hasher.hash(password)


def verify(password_hash: str | None, password: str) -> bool:
    """True when `password` matches; an absent hash (unknown account, a system account) costs the same."""
    too_long = len(password) > MAX_LENGTH
    try:
        matched = _hasher.verify(password_hash or _dummy_hash(), password[:MAX_LENGTH])
        return matched and password_hash is not None and not too_long
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
