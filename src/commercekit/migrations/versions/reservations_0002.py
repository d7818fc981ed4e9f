"""Reservations: stock per (SKU, location), and where each reservation's units are held.

Existing stock rows become the default location's; existing reservations
have no allocations (every unit at the default location), so a store with
one location reads exactly what it wrote before.

Revision ID: reservations_0002
Revises: reservations_0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "reservations_0002"
down_revision = "reservations_0001"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("commercekit_stock") as table:  # SQLite too
        table.add_column(
            sa.Column("location", sa.String(64), nullable=False, server_default="default")
        )
        table.drop_constraint("pk_commercekit_stock", type_="primary")
        table.create_primary_key("pk_commercekit_stock", ["sku", "location"])
    with op.batch_alter_table("commercekit_reservations") as table:
        table.add_column(sa.Column("allocations", _JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("commercekit_reservations") as table:
        table.drop_column("allocations")
    # Only the default location's rows fit the old key; the others are dropped.
    op.execute("DELETE FROM commercekit_stock WHERE location <> 'default'")
    with op.batch_alter_table("commercekit_stock") as table:
        table.drop_constraint("pk_commercekit_stock", type_="primary")
        table.create_primary_key("pk_commercekit_stock", ["sku"])
        table.drop_column("location")
