"""Orders: one row per order, per order line (SKU and location), per shipment.

Revision ID: orders_0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "orders_0001"
down_revision = None
branch_labels = ("orders",)
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "commercekit_orders",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_commercekit_orders")),
    )
    op.create_index(op.f("ix_commercekit_orders_owner"), "commercekit_orders", ["owner"])
    op.create_table(
        "commercekit_order_lines",
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("sku", sa.String(200), nullable=False),
        sa.Column("location", sa.String(64), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("shipped", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "order_id", "sku", "location", name=op.f("pk_commercekit_order_lines")
        ),
    )
    op.create_table(
        "commercekit_shipments",
        sa.Column("id", sa.String(100), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("lines", _JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_commercekit_shipments")),
    )
    op.create_index(
        op.f("ix_commercekit_shipments_order_id"), "commercekit_shipments", ["order_id"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_commercekit_shipments_order_id"), table_name="commercekit_shipments")
    op.drop_table("commercekit_shipments")
    op.drop_table("commercekit_order_lines")
    op.drop_index(op.f("ix_commercekit_orders_owner"), table_name="commercekit_orders")
    op.drop_table("commercekit_orders")
