"""Protect personal data at rest: encrypted name and customer id, a keyed hash for look-ups, anonymisation.

Existing rows are encrypted in place with the data keys (evaluation_api/privacy/encryption.py).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from evaluation_api.migrate import migration_data_keys

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("evaluations") as batch:
        batch.drop_index("ix_evaluations_customer_id")
        batch.alter_column("customer_name", type_=sa.Text(), existing_type=sa.String(120), nullable=True)
        batch.alter_column("customer_id", type_=sa.Text(), existing_type=sa.String(64), existing_nullable=True)
        batch.add_column(sa.Column("customer_id_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("anonymized_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_evaluations_customer_id_hash", ["customer_id_hash"])
    connection = op.get_bind()
    rows = connection.execute(sa.text("SELECT id, customer_name, customer_id FROM evaluations")).all()
    if not rows:
        return
    keys = migration_data_keys(context.config.attributes)
    statement = sa.text(
        "UPDATE evaluations SET customer_name = :name, customer_id = :cid, customer_id_hash = :hash WHERE id = :id"
    )
    for evaluation_id, name, customer_id in rows:
        protected = keys.protect_customer(name=name, customer_id=customer_id)
        connection.execute(
            statement,
            {
                "id": evaluation_id,
                "name": protected["customer_name"],
                "cid": protected["customer_id"],
                "hash": protected["customer_id_hash"],
            },
        )


def downgrade() -> None:
    connection = op.get_bind()
    rows = connection.execute(sa.text("SELECT id, customer_name, customer_id FROM evaluations")).all()
    keys = migration_data_keys(context.config.attributes) if rows else None
    statement = sa.text("UPDATE evaluations SET customer_name = :name, customer_id = :cid WHERE id = :id")
    for evaluation_id, name, customer_id in rows:
        assert keys is not None
        connection.execute(
            statement,
            {
                "id": evaluation_id,
                # An anonymised record has no name to give back; the old schema requires one.
                "name": keys.decrypt(name) if name is not None else "",
                "cid": keys.decrypt(customer_id) if customer_id is not None else None,
            },
        )
    with op.batch_alter_table("evaluations") as batch:
        batch.drop_index("ix_evaluations_customer_id_hash")
        batch.drop_column("anonymized_at")
        batch.drop_column("customer_id_hash")
        batch.alter_column("customer_name", type_=sa.String(120), existing_type=sa.Text(), nullable=False)
        batch.alter_column("customer_id", type_=sa.String(64), existing_type=sa.Text(), existing_nullable=True)
        batch.create_index("ix_evaluations_customer_id", ["customer_id"])
