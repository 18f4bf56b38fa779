"""Backtests: a portfolio run may name the challenger whose policy is its policy B.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08

A run without one (every run before this one) has a candidate policy file or no policy B, as before.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    # batch mode: SQLite alters a table by copying it (and then every constraint needs a name).
    with op.batch_alter_table("portfolio_runs") as batch:
        batch.add_column(sa.Column("challenger_id", _ID, nullable=True))
        batch.create_foreign_key("fk_portfolio_runs_challenger_id", "challengers", ["challenger_id"], ["id"])
        batch.create_index("ix_portfolio_runs_challenger_id", ["challenger_id"])


def downgrade() -> None:
    with op.batch_alter_table("portfolio_runs") as batch:
        batch.drop_index("ix_portfolio_runs_challenger_id")
        batch.drop_constraint("fk_portfolio_runs_challenger_id", type_="foreignkey")
        batch.drop_column("challenger_id")
