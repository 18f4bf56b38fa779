"""Review cases: the human review of automated decisions (LGPD art. 20).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import context, op

from evaluation_api.migrate import migration_data_keys

# Frozen copies, as of this revision (the code's own may change later).
SYSTEM_ACTOR = "sistema"
AUTOMATIC_REASON = "Decisão automática: em análise (a política encaminha este caso para revisão humana)."

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_cases",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("evaluation_id", sa.String(36), sa.ForeignKey("evaluations.id"), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("opened_by", sa.String(120), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("final_decision", sa.String(16), nullable=True),
        sa.Column("reviewer", sa.String(120), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("history", sa.Text, nullable=False),
    )
    op.create_index("ix_review_cases_evaluation_id", "review_cases", ["evaluation_id"])
    op.create_index("ix_review_cases_opened_at", "review_cases", ["opened_at"])
    # At most one open case per evaluation, enforced by the database.
    op.create_index(
        "uq_review_cases_one_open_per_evaluation",
        "review_cases",
        ["evaluation_id"],
        unique=True,
        sqlite_where=sa.text("status = 'open'"),
        postgresql_where=sa.text("status = 'open'"),
    )
    connection = op.get_bind()
    if connection.dialect.name == "postgresql":
        # The API's own role (docs/DEPLOY.md, "Audit trail") opens and closes cases, never deletes them.
        op.execute(
            "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'evaluation_api') THEN "
            "GRANT SELECT, INSERT, UPDATE ON review_cases TO evaluation_api; "
            "END IF; END $$"
        )
    # Every `review` decision recorded before this revision gets its open case, as new ones do.
    pending = connection.execute(sa.text("SELECT id, created_at FROM evaluations WHERE decision = 'review'")).all()
    if not pending:
        return
    keys = migration_data_keys(context.config.attributes)
    insert = sa.text(
        "INSERT INTO review_cases (id, evaluation_id, status, trigger, opened_by, opened_at, history)"
        " VALUES (:id, :evaluation_id, 'open', 'automatic', :opened_by, :opened_at, :history)"
    )
    for evaluation_id, created_at in pending:
        at = created_at if isinstance(created_at, datetime) else datetime.fromisoformat(str(created_at))
        at = at.replace(tzinfo=UTC) if at.tzinfo is None else at
        history = [{"at": at.isoformat(), "actor": SYSTEM_ACTOR, "action": "opened", "note": AUTOMATIC_REASON}]
        connection.execute(
            insert,
            {
                "id": str(uuid.uuid4()),
                "evaluation_id": evaluation_id,
                "opened_by": SYSTEM_ACTOR,
                "opened_at": at,
                "history": keys.encrypt_json(history),
            },
        )


def downgrade() -> None:
    op.drop_table("review_cases")
