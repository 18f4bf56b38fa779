"""Roles and the acting principal. What each role may do is declared in evaluation_api/identity/access.py."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    ANALYST = "analyst"  # evaluates customers, reads what they created
    REVIEWER = "reviewer"  # works the review queue
    AUDITOR = "auditor"  # reads any record and the audit trail, changes nothing
    DPO = "dpo"  # the data-protection officer: data-subject requests
    SYSTEM = "system"  # another system calling /avaliar or /api/v1/evaluations
    ADMIN = "admin"  # manages accounts
    RISK = "risk"  # the risk team: policy versions, challengers, promotion and rollback


ROLES: tuple[str, ...] = tuple(role.value for role in Role)


@dataclass(frozen=True)
class Principal:
    """Who is calling. `subject` is stable and unique (a local account's name, `oidc:<sub>` for the
    identity provider's users): it is what records and audit events name."""

    subject: str
    name: str
    roles: frozenset[Role]
    via: str  # "token", "key" or "oidc"

    def has(self, *roles: Role) -> bool:
        return not self.roles.isdisjoint(roles)

    @property
    def roles_text(self) -> str:
        return ",".join(sorted(self.roles))
