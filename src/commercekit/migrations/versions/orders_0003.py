"""Orders: their payment, what each line was paid, refunds of cancellations, and returns.

Revision ID: orders_0003
Revises: orders_0002
Create Date: 2026-12-02

Orders opened before it have no payment recorded: their cancellations
refund nothing (refund those by hand, with `RefundService`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "orders_0003"
down_revision = "orders_0002"
branch_labels = None
depends_on = ("payments_0003",)  # a cancellation records its refund

_MONEY = sa.Numeric(21, 6)
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("commercekit_orders") as table:  # SQLite too
        table.add_column(sa.Column("payment_id", sa.String(200), nullable=True))
        table.add_column(sa.Column("payment_amount", _MONEY, nullable=True))
        table.add_column(sa.Column("currency", sa.String(3), nullable=True))
    with op.batch_alter_table("commercekit_order_lines") as table:
        table.add_column(sa.Column("amount", _MONEY, nullable=True))
        table.add_column(sa.Column("returned", sa.BigInteger(), nullable=False, server_default="0"))
        table.add_column(sa.Column("damaged", sa.BigInteger(), nullable=False, server_default="0"))
        table.add_column(sa.Column("resold", sa.BigInteger(), nullable=False, server_default="0"))
        table.add_column(sa.Column("refunded", sa.BigInteger(), nullable=False, server_default="0"))
    with op.batch_alter_table("commercekit_order_cancellations") as table:
        table.add_column(sa.Column("refund_id", sa.String(200), nullable=True))
        table.add_column(sa.Column("refunded", _MONEY, nullable=True))
        table.add_column(sa.Column("currency", sa.String(3), nullable=True))
    op.create_table(
        "commercekit_order_returns",
        sa.Column("id", sa.String(100), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("lines", _JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("refund_id", sa.String(200), nullable=True),
        sa.Column("refunded", _MONEY, nullable=True),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_commercekit_order_returns")),
    )
    op.create_index(
        op.f("ix_commercekit_order_returns_order_id"), "commercekit_order_returns", ["order_id"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_commercekit_order_returns_order_id"), "commercekit_order_returns")
    op.drop_table("commercekit_order_returns")
    with op.batch_alter_table("commercekit_order_cancellations") as table:
        table.drop_column("currency")
        table.drop_column("refunded")
        table.drop_column("refund_id")
    with op.batch_alter_table("commercekit_order_lines") as table:
        table.drop_column("refunded")
        table.drop_column("resold")
        table.drop_column("damaged")
        table.drop_column("returned")
        table.drop_column("amount")
    with op.batch_alter_table("commercekit_orders") as table:
        table.drop_column("currency")
        table.drop_column("payment_amount")
        table.drop_column("payment_id")
