"""Change control: policy versions, releases, challengers and their shadow decisions.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

Empty at first: the API registers its POLICY_PATH file as version 1, live, on its first start
(evaluation_api/releases/registry.py, `seed`), since the file is not the migration's to read.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "policy_versions",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("label", sa.String(32), nullable=False, unique=True),
        sa.Column("sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("author", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
    )
    op.create_index("ix_policy_versions_status", "policy_versions", ["status"])
    op.create_table(
        "releases",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("policy_version_id", _ID, sa.ForeignKey("policy_versions.id"), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("justification", sa.Text, nullable=True),
        sa.Column("previous_id", _ID, sa.ForeignKey("releases.id"), nullable=True),
        sa.Column("challenger_id", sa.Integer, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "challengers",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("policy_version_id", _ID, sa.ForeignKey("policy_versions.id"), nullable=False),
        sa.Column("started_by", sa.String(128), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_by", sa.String(128), nullable=True),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
    )
    op.create_index("ix_challengers_policy_version_id", "challengers", ["policy_version_id"])
    op.create_index("ix_challengers_stopped_at", "challengers", ["stopped_at"])
    op.create_table(
        "shadow_decisions",
        sa.Column("evaluation_id", sa.String(36), primary_key=True),
        sa.Column("challenger_id", sa.Integer, primary_key=True),
        sa.Column("segment_key", sa.String(64), nullable=False),
        sa.Column("live_decision", sa.String(16), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reasons", sa.JSON, nullable=False),
        sa.Column("policy_version", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_shadow_decisions_challenger_id", "shadow_decisions", ["challenger_id"])


def downgrade() -> None:
    op.drop_table("shadow_decisions")
    op.drop_table("challengers")
    op.drop_table("releases")
    op.drop_table("policy_versions")
