"""Payments: charges, their settlements against reservations, and refunds.

Revision ID: payments_0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "payments_0001"
down_revision = None
branch_labels = ("payments",)
depends_on = None

_MONEY = sa.Numeric(21, 6)


def _now() -> sa.Column[dt.datetime]:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "commercekit_payments",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("reservation_id", sa.String(200), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("amount", _MONEY, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("failure_code", sa.String(200), nullable=True),
        sa.Column("failure_message", sa.String(500), nullable=True),
        _now(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_commercekit_payments")),
        sa.UniqueConstraint(
            "idempotency_key", name=op.f("uq_commercekit_payments_idempotency_key")
        ),
    )
    op.create_index(
        op.f("ix_commercekit_payments_reservation_id"), "commercekit_payments", ["reservation_id"]
    )
    op.create_table(
        "commercekit_payment_settlements",
        sa.Column("payment_id", sa.String(200), nullable=False),
        sa.Column("reservation_id", sa.String(200), nullable=False),
        sa.Column("paying_reservation_id", sa.String(200), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("amount", _MONEY, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=True),
        sa.Column("issue", sa.String(32), nullable=True),
        _now(),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("payment_id", name=op.f("pk_commercekit_payment_settlements")),
        sa.UniqueConstraint(
            "paying_reservation_id",
            name=op.f("uq_commercekit_payment_settlements_paying_reservation_id"),
        ),
    )
    op.create_index(
        op.f("ix_commercekit_payment_settlements_reservation_id"),
        "commercekit_payment_settlements",
        ["reservation_id"],
    )
    op.create_table(
        "commercekit_refunds",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("payment_id", sa.String(200), nullable=False),
        sa.Column("reservation_id", sa.String(200), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("amount", _MONEY, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("payment_amount", _MONEY, nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("text", sa.String(500), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("processor_refund_id", sa.String(200), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_commercekit_refunds")),
        sa.UniqueConstraint("payment_id", name=op.f("uq_commercekit_refunds_payment_id")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_commercekit_refunds_idempotency_key")),
    )
    op.create_index(
        op.f("ix_commercekit_refunds_reservation_id"), "commercekit_refunds", ["reservation_id"]
    )
    op.create_index("ix_commercekit_refunds_status", "commercekit_refunds", ["status"])


def downgrade() -> None:
    op.drop_table("commercekit_refunds")
    op.drop_table("commercekit_payment_settlements")
    op.drop_table("commercekit_payments")
