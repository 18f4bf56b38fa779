"""Create the evaluations table (decision records).

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evaluations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("customer_name", sa.String(120), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=True),
        sa.Column("balance", sa.Float, nullable=False),
        sa.Column("purchases", sa.Float, nullable=False),
        sa.Column("cash_advance", sa.Float, nullable=False),
        sa.Column("credit_limit", sa.Float, nullable=False),
        sa.Column("payments", sa.Float, nullable=False),
        sa.Column("segment_id", sa.Integer, nullable=False),
        sa.Column("segment_key", sa.String(64), nullable=False),
        sa.Column("distances", sa.JSON, nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reasons", sa.JSON, nullable=False),
        sa.Column("model_name", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("policy_version", sa.String(32), nullable=False),
        sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_evaluations_request_id", "evaluations", ["request_id"])
    op.create_index("ix_evaluations_customer_id", "evaluations", ["customer_id"])
    op.create_index("ix_evaluations_model_version", "evaluations", ["model_version"])


def downgrade() -> None:
    op.drop_table("evaluations")
