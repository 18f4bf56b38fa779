"""Change control for models: model versions, the model of each release, challengers of a model.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07

A release without a model version (every release before this one) is decided by the model that
MODEL_SERVICE_URL serves, as before.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("version", sa.String(64), nullable=False, unique=True),
        sa.Column("tag", sa.String(128), nullable=False),
        sa.Column("service_url", sa.String(512), nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("author", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
    )
    op.create_index("ix_model_versions_status", "model_versions", ["status"])
    # batch mode: SQLite alters a table by copying it (and then every constraint needs a name).
    with op.batch_alter_table("releases") as batch:
        batch.add_column(sa.Column("model_version_id", _ID, nullable=True))
        batch.create_foreign_key("fk_releases_model_version_id", "model_versions", ["model_version_id"], ["id"])
    with op.batch_alter_table("challengers") as batch:
        batch.alter_column("policy_version_id", existing_type=_ID, nullable=True)
        batch.add_column(sa.Column("model_version_id", _ID, nullable=True))
        batch.create_foreign_key("fk_challengers_model_version_id", "model_versions", ["model_version_id"], ["id"])
    with op.batch_alter_table("shadow_decisions") as batch:
        batch.add_column(sa.Column("challenger_segment_key", sa.String(64), nullable=True))
        batch.add_column(sa.Column("model_version", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("shadow_decisions") as batch:
        batch.drop_column("model_version")
        batch.drop_column("challenger_segment_key")
    with op.batch_alter_table("challengers") as batch:
        batch.drop_constraint("fk_challengers_model_version_id", type_="foreignkey")
        batch.drop_column("model_version_id")
        batch.alter_column("policy_version_id", existing_type=_ID, nullable=False)
    with op.batch_alter_table("releases") as batch:
        batch.drop_constraint("fk_releases_model_version_id", type_="foreignkey")
        batch.drop_column("model_version_id")
    op.drop_table("model_versions")
