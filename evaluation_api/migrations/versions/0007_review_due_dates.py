"""Legal clocks on review cases: each case's kind (a review, or an information request) and its due date.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

Existing cases are reviews, due 15 calendar days after they were opened (REVIEW_DUE_DAYS's default,
frozen here: a later change of the setting applies to new cases only). At most one open case per
evaluation and kind: the unique index takes the kind.
"""

from datetime import timedelta

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

REVIEW_DUE_DAYS = 15


def upgrade() -> None:
    op.add_column("review_cases", sa.Column("kind", sa.String(16), nullable=False, server_default="review"))
    op.add_column("review_cases", sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))
    connection = op.get_bind()
    cases = sa.table(
        "review_cases",
        sa.column("id", sa.String),
        sa.column("opened_at", sa.DateTime(timezone=True)),
        sa.column("due_at", sa.DateTime(timezone=True)),
    )
    for case_id, opened_at in connection.execute(sa.select(cases.c.id, cases.c.opened_at)).all():
        connection.execute(
            cases.update().where(cases.c.id == case_id).values(due_at=opened_at + timedelta(days=REVIEW_DUE_DAYS))
        )
    with op.batch_alter_table("review_cases") as batch:
        batch.alter_column("due_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch.drop_index("uq_review_cases_one_open_per_evaluation")
        batch.create_index(
            "uq_review_cases_one_open_per_evaluation",
            ["evaluation_id", "kind"],
            unique=True,
            sqlite_where=sa.text("status = 'open'"),
            postgresql_where=sa.text("status = 'open'"),
        )
        batch.create_index("ix_review_cases_due_at", ["due_at"])


def downgrade() -> None:
    with op.batch_alter_table("review_cases") as batch:
        batch.drop_index("ix_review_cases_due_at")
        batch.drop_index("uq_review_cases_one_open_per_evaluation")
        batch.create_index(
            "uq_review_cases_one_open_per_evaluation",
            ["evaluation_id"],
            unique=True,
            sqlite_where=sa.text("status = 'open'"),
            postgresql_where=sa.text("status = 'open'"),
        )
        batch.drop_column("due_at")
        batch.drop_column("kind")
