"""Orders: the payment behind each order, what each line was paid, and cancellations' refunds.

Revision ID: orders_0003
Revises: orders_0002
Create Date: 2026-12-02

Orders opened before it have no payment recorded: their cancellations
refund nothing (refund those by hand, with `RefundService`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "orders_0003"
down_revision = "orders_0002"
branch_labels = None
depends_on = ("payments_0003",)  # a cancellation records its refund

_MONEY = sa.Numeric(21, 6)


def upgrade() -> None:
    with op.batch_alter_table("commercekit_orders") as table:  # SQLite too
        table.add_column(sa.Column("payment_id", sa.String(200), nullable=True))
        table.add_column(sa.Column("payment_amount", _MONEY, nullable=True))
        table.add_column(sa.Column("currency", sa.String(3), nullable=True))
    with op.batch_alter_table("commercekit_order_lines") as table:
        table.add_column(sa.Column("amount", _MONEY, nullable=True))
    with op.batch_alter_table("commercekit_order_cancellations") as table:
        table.add_column(sa.Column("refund_id", sa.String(200), nullable=True))
        table.add_column(sa.Column("refunded", _MONEY, nullable=True))
        table.add_column(sa.Column("currency", sa.String(3), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("commercekit_order_cancellations") as table:
        table.drop_column("currency")
        table.drop_column("refunded")
        table.drop_column("refund_id")
    with op.batch_alter_table("commercekit_order_lines") as table:
        table.drop_column("amount")
    with op.batch_alter_table("commercekit_orders") as table:
        table.drop_column("currency")
        table.drop_column("payment_amount")
        table.drop_column("payment_id")
