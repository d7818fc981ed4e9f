"""The SQLAlchemy models of payments, their settlements and their refunds."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import Index, Integer, Numeric, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from commercekit.sql import Base

__all__ = ["MONEY", "PaymentRow", "RefundRow", "RefundTotalRow", "SettlementRow"]

MONEY = Numeric(21, 6)
"""Up to 15 digits before the point and 6 after, as the event contracts allow."""


class PaymentRow(Base):
    """A charge made through `PaymentService`: its idempotency key and its outcome."""

    __tablename__ = "commercekit_payments"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    reservation_id: Mapped[str] = mapped_column(String(200), index=True)
    user_id: Mapped[str] = mapped_column(String(200))
    amount: Mapped[Decimal] = mapped_column(MONEY)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))
    failure_code: Mapped[str | None] = mapped_column(String(200), default=None)
    failure_message: Mapped[str | None] = mapped_column(String(500), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    redriven_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    """When `redrive_payments` last sent its outcome again (None: never)."""
    redrives: Mapped[int] = mapped_column(Integer(), server_default=text("0"), default=0)
    """How many times its outcome was sent again."""


class SettlementRow(Base):
    """How a payment event was settled against its reservation.

    `paying_reservation_id` is UNIQUE: of several payments for one
    reservation, only the one holding it may confirm the reservation; the
    others are double payments.
    """

    __tablename__ = "commercekit_payment_settlements"

    payment_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    reservation_id: Mapped[str] = mapped_column(String(200), index=True)
    paying_reservation_id: Mapped[str | None] = mapped_column(
        String(200), unique=True, default=None
    )
    status: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Decimal] = mapped_column(MONEY)
    currency: Mapped[str] = mapped_column(String(3))
    outcome: Mapped[str | None] = mapped_column(String(32), default=None)
    issue: Mapped[str | None] = mapped_column(String(32), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    settled_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class RefundRow(Base):
    """A refund; UNIQUE on its idempotency key, so a payment is refunded once per key."""

    __tablename__ = "commercekit_refunds"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    payment_id: Mapped[str] = mapped_column(String(200), index=True)
    reservation_id: Mapped[str] = mapped_column(String(200), index=True)
    user_id: Mapped[str] = mapped_column(String(200))
    amount: Mapped[Decimal] = mapped_column(MONEY)
    currency: Mapped[str] = mapped_column(String(3))
    payment_amount: Mapped[Decimal] = mapped_column(MONEY)
    action: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16))
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    processor_refund_id: Mapped[str | None] = mapped_column(String(200), default=None)
    last_error: Mapped[str | None] = mapped_column(Text(), default=None)
    requested_at: Mapped[dt.datetime] = mapped_column()
    completed_at: Mapped[dt.datetime | None] = mapped_column(default=None)

    __table_args__ = (Index("ix_commercekit_refunds_status", "status"),)


class RefundTotalRow(Base):
    """What a payment's refunds add up to: never more than was paid.

    A refund adds its amount under this row's lock, after checking that
    ``refunded + amount <= paid``: the payment's refunds wait for each other.
    """

    __tablename__ = "commercekit_refund_totals"

    payment_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    paid: Mapped[Decimal] = mapped_column(MONEY)
    refunded: Mapped[Decimal] = mapped_column(MONEY)
