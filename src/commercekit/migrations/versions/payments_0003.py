"""Refunds: several per payment (one per key), and what each payment's refunds add up to.

Revision ID: payments_0003
Revises: payments_0002
Create Date: 2026-12-02

The refunds' UNIQUE payment id gives way to an index (the idempotency key
stays UNIQUE), and ``commercekit_refund_totals`` is filled from the refunds
already made. A downgrade fails while any payment has more than one refund.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "payments_0003"
down_revision = "payments_0002"
branch_labels = None
depends_on = None

_MONEY = sa.Numeric(21, 6)


def upgrade() -> None:
    op.create_table(
        "commercekit_refund_totals",
        sa.Column("payment_id", sa.String(200), nullable=False),
        sa.Column("paid", _MONEY, nullable=False),
        sa.Column("refunded", _MONEY, nullable=False),
        sa.PrimaryKeyConstraint("payment_id", name=op.f("pk_commercekit_refund_totals")),
    )
    op.execute(
        "INSERT INTO commercekit_refund_totals (payment_id, paid, refunded) "
        "SELECT payment_id, payment_amount, amount FROM commercekit_refunds"
    )
    with op.batch_alter_table("commercekit_refunds") as table:  # SQLite too
        table.drop_constraint(op.f("uq_commercekit_refunds_payment_id"), type_="unique")
        table.create_index(op.f("ix_commercekit_refunds_payment_id"), ["payment_id"])


def downgrade() -> None:
    with op.batch_alter_table("commercekit_refunds") as table:
        table.drop_index(op.f("ix_commercekit_refunds_payment_id"))
        table.create_unique_constraint(op.f("uq_commercekit_refunds_payment_id"), ["payment_id"])
    op.drop_table("commercekit_refund_totals")
