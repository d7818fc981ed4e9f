"""Reservations: kits, and a backorder cap per SKU and location.

A kit is a SKU sold as a set of other SKUs, each definition versioned; the
backorder cap is how many units may be held beyond the stock (none so far).

Revision ID: reservations_0003
Revises: reservations_0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "reservations_0003"
down_revision = "reservations_0002"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("commercekit_stock") as table:  # SQLite too
        table.add_column(
            sa.Column("backorder", sa.BigInteger(), nullable=False, server_default="0")
        )
    op.create_table(
        "commercekit_kits",
        sa.Column("sku", sa.String(200), nullable=False),
        sa.Column("components", _JSON, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sku", name=op.f("pk_commercekit_kits")),
    )


def downgrade() -> None:
    op.drop_table("commercekit_kits")
    with op.batch_alter_table("commercekit_stock") as table:
        table.drop_column("backorder")
