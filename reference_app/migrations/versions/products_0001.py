"""Products of the inventory service.

Revision ID: products_0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "products_0001"
down_revision = None
branch_labels = ("products",)
depends_on = None


def upgrade() -> None:
    """Create ``products`` (unique SKUs; stock lives in commercekit's reservation store)."""
    op.create_table(
        "products",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("sku", sa.String(200), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("price", sa.Numeric(12, 2), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_products")),
        sa.UniqueConstraint("sku", name=op.f("uq_products_sku")),
        sa.CheckConstraint("price > 0", name=op.f("ck_products_price_positive")),
    )
    op.create_index("ix_products_created_at", "products", ["created_at", "id"])


def downgrade() -> None:
    """Drop ``products``."""
    op.drop_index("ix_products_created_at", table_name="products")
    op.drop_table("products")
