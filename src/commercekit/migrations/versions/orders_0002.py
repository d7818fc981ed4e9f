"""Orders: cancelled units per order line, and one row per cancellation.

Revision ID: orders_0002
Revises: orders_0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "orders_0002"
down_revision = "orders_0001"
branch_labels = None
depends_on = ("reservations_0004",)  # a cancellation records its stock move

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("commercekit_order_lines") as table:  # SQLite too
        table.add_column(
            sa.Column("cancelled", sa.BigInteger(), nullable=False, server_default="0")
        )
    op.create_table(
        "commercekit_order_cancellations",
        sa.Column("id", sa.String(100), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("lines", _JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_commercekit_order_cancellations")),
    )
    op.create_index(
        op.f("ix_commercekit_order_cancellations_order_id"),
        "commercekit_order_cancellations",
        ["order_id"],
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_commercekit_order_cancellations_order_id"), "commercekit_order_cancellations"
    )
    op.drop_table("commercekit_order_cancellations")
    with op.batch_alter_table("commercekit_order_lines") as table:
        table.drop_column("cancelled")
