"""Each decision's explanation (the figures that weighed, the smallest change that would alter it).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

Nullable: records made before explanations existed have none, and say so when read.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN on both databases: no copy of a table that may hold millions of records.
    op.add_column("evaluations", sa.Column("explanation", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("evaluations") as batch:
        batch.drop_column("explanation")
