"""Stock locations and sales channels of the inventory service.

Revision ID: products_0002
Revises: products_0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "products_0002"
down_revision = "products_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``stock_locations`` and ``sales_channels``."""
    op.create_table(
        "stock_locations",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_stock_locations")),
    )
    op.create_table(
        "sales_channels",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("locations", sa.JSON(), nullable=False),
        sa.Column("strategy", sa.String(16), nullable=False),
        sa.Column("split", sa.String(16), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_sales_channels")),
    )


def downgrade() -> None:
    """Drop them."""
    op.drop_table("sales_channels")
    op.drop_table("stock_locations")
