"""Change control's tables: policy and model versions, the releases that made a pair live, challengers,
and the decisions a challenger made in shadow. migrations/versions/0008_releases.py and
0009_model_versions.py create the same tables."""

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


class ModelVersionRow(Base):
    """A model version as a model service serves it: its BentoML tag, its card and its fitted parameters
    (the service's GET /metadata when it was registered), and the service that serves it. Each model
    version is served by a service of its own (docs/ARCHITECTURE.md, "Change control")."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    version: Mapped[str] = mapped_column(String(64), unique=True)
    tag: Mapped[str] = mapped_column(String(128))
    service_url: Mapped[str] = mapped_column(String(512))
    # The whole /metadata answer: the card (silhouette, shares, drift reference) and the geometry the
    # explanations need, kept so that every process can explain with it without asking the service.
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON)
    author: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), index=True)


class ReleaseRow(Base):
    """One change of the live policy. The newest row is what is live from its `effective_at` on; every
    process switches at that instant (evaluation_api/releases/live.py)."""

    __tablename__ = "releases"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    policy_version_id: Mapped[int] = mapped_column(ForeignKey("policy_versions.id"))
    # None: the model MODEL_SERVICE_URL serves (the seed's, and whatever a deployment put there).
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    action: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(128))
    justification: Mapped[str | None] = mapped_column(Text)
    # The release this one replaced (None for the seed): what a rollback returns to.
    previous_id: Mapped[int | None] = mapped_column(ForeignKey("releases.id"))
    challenger_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    effective_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ChallengerRow(Base):
    """A candidate policy, model, or both, deciding in shadow beside the live pair, from started_at until
    stopped_at. A missing half is the live one's."""

    __tablename__ = "challengers"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    policy_version_id: Mapped[int | None] = mapped_column(ForeignKey("policy_versions.id"), index=True)
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
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
    segment_key: Mapped[str] = mapped_column(String(64))  # the live model's
    live_decision: Mapped[str] = mapped_column(String(16))
    decision: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    policy_version: Mapped[str] = mapped_column(String(32))
    # The challenger model's segment and version (None: the challenger is a policy only).
    challenger_segment_key: Mapped[str | None] = mapped_column(String(64))
    model_version: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
