"""Reservations: kits, a backorder cap per SKU and location, purchase limits per SKU.

A kit is a SKU sold as a set of other SKUs, each definition versioned; the
backorder cap is how many units may be held beyond the stock (none so far);
a purchase limit, how many units one owner may hold or buy within a window
(none so far; kept on the SKU's default-location row).

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
        for column in ("backorder", "purchase_limit", "limit_window_ms"):
            table.add_column(sa.Column(column, sa.BigInteger(), nullable=False, server_default="0"))
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
        for column in ("limit_window_ms", "purchase_limit", "backorder"):
            table.drop_column(column)
