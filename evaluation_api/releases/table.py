"""Change control's tables: policy versions, the releases that made one live, challengers, and the
decisions a challenger made in shadow. migrations/versions/0008_releases.py creates the same tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from evaluation_api.database import Base

# draft: registered, deciding nothing. candidate: has been a challenger (shadow), may be promoted.
# live: decides every evaluation. retired: was live, or was withdrawn; never promoted again (a
# rollback may bring back the version that was live before, in one step).
VersionStatus = Literal["draft", "candidate", "live", "retired"]
VERSION_STATUSES: tuple[VersionStatus, ...] = ("draft", "candidate", "live", "retired")
ReleaseAction = Literal["seed", "promote", "rollback"]

_ID = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements only an INTEGER key


class PolicyVersionRow(Base):
    """A policy file as registered: its text is what decides, its sha256 names it, its `version` (the
    file's own label) is what records name."""

    __tablename__ = "policy_versions"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    label: Mapped[str] = mapped_column(String(32), unique=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    text: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), index=True)


class ReleaseRow(Base):
    """One change of the live policy. The newest row is what is live from its `effective_at` on; every
    process switches at that instant (evaluation_api/releases/live.py)."""

    __tablename__ = "releases"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    policy_version_id: Mapped[int] = mapped_column(ForeignKey("policy_versions.id"))
    action: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(128))
    justification: Mapped[str | None] = mapped_column(Text)
    # The release this one replaced (None for the seed): what a rollback returns to.
    previous_id: Mapped[int | None] = mapped_column(ForeignKey("releases.id"))
    challenger_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    effective_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ChallengerRow(Base):
    """A candidate policy deciding in shadow beside the live one, from started_at until stopped_at."""

    __tablename__ = "challengers"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    policy_version_id: Mapped[int] = mapped_column(ForeignKey("policy_versions.id"), index=True)
    started_by: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    stopped_by: Mapped[str | None] = mapped_column(String(128))
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    # Why it stopped: "stopped", "promoted", or "superseded" (another release came first).
    outcome: Mapped[str | None] = mapped_column(String(16))


class ShadowDecisionRow(Base):
    """What a challenger decided for one evaluation. Never shown to the customer, never changes the answer."""

    __tablename__ = "shadow_decisions"

    evaluation_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    challenger_id: Mapped[int] = mapped_column(Integer, primary_key=True, index=True)
    segment_key: Mapped[str] = mapped_column(String(64))
    live_decision: Mapped[str] = mapped_column(String(16))
    decision: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    policy_version: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
