"""Portfolio runs requested through the API: their state, written by the worker as it goes.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "portfolio_runs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("rows_done", sa.Integer, nullable=False),
        sa.Column("rows_total", sa.Integer, nullable=True),
        sa.Column("summary", sa.JSON, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("file_name", sa.String(255), nullable=False),
        sa.Column("input_path", sa.String(1024), nullable=False),
        sa.Column("candidate_path", sa.String(1024), nullable=True),
        sa.Column("result_dir", sa.String(1024), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("worker", sa.String(255), nullable=True),
    )
    op.create_index("ix_portfolio_runs_status", "portfolio_runs", ["status"])
    op.create_index("ix_portfolio_runs_created_by", "portfolio_runs", ["created_by"])
    op.create_index("ix_portfolio_runs_created_at", "portfolio_runs", ["created_at"])


def downgrade() -> None:
    op.drop_table("portfolio_runs")
