"""The orders' tables: one row per order, per order line, per shipment."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from commercekit.errors import MissingExtraError

try:
    from sqlalchemy import JSON, BigInteger, Integer, Numeric, String
    from sqlalchemy.dialects.postgresql import JSONB
    from sqlalchemy.orm import Mapped, mapped_column

    from commercekit.sql import Base
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtraError("postgres", __name__) from exc

__all__ = ["CancellationRow", "OrderLineRow", "OrderRow", "ReturnRow", "ShipmentRow"]

_MONEY = Numeric(21, 6)


class OrderRow(Base):
    """One order; `version` grows with each change (a change locks the row by bumping it)."""

    __tablename__ = "commercekit_orders"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200), index=True)
    status: Mapped[str] = mapped_column(String(24))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    payment_id: Mapped[str | None] = mapped_column(String(200), default=None)
    """The payment that confirmed the reservation (None: opened without one)."""
    payment_amount: Mapped[Decimal | None] = mapped_column(_MONEY, default=None)
    currency: Mapped[str | None] = mapped_column(String(3), default=None)


class OrderLineRow(Base):
    """The units of one SKU an order holds at one location: shipped, cancelled, committed."""

    __tablename__ = "commercekit_order_lines"

    order_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    sku: Mapped[str] = mapped_column(String(200), primary_key=True)
    location: Mapped[str] = mapped_column(String(64), primary_key=True)
    quantity: Mapped[int] = mapped_column(BigInteger)
    shipped: Mapped[int] = mapped_column(BigInteger, default=0)
    cancelled: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    returned: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    damaged: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """Of the returned units, those on hand again but never to be sold."""
    resold: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """Of the returned units, those back on sale."""
    refunded: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """Units whose share of `amount` was refunded (cancelled or returned)."""
    amount: Mapped[Decimal | None] = mapped_column(_MONEY, default=None)
    """What was paid for the line's units (None: the order has no payment)."""


class ShipmentRow(Base):
    """One shipment, kept under the caller's id: the same id is never shipped twice."""

    __tablename__ = "commercekit_shipments"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(64), index=True)
    lines: Mapped[list[list[Any]]] = mapped_column(JSON().with_variant(JSONB(), "postgresql"))
    created_at: Mapped[dt.datetime]


class _Refunded:
    """The refund a change of an order asked for: its id, its amount and currency."""

    refund_id: Mapped[str | None] = mapped_column(String(200), default=None)
    """The refund of the change's units (None: nothing was refunded)."""
    refunded: Mapped[Decimal | None] = mapped_column(_MONEY, default=None)
    currency: Mapped[str | None] = mapped_column(String(3), default=None)


class CancellationRow(_Refunded, Base):
    """One cancellation, kept under the caller's id: the same id never cancels twice."""

    __tablename__ = "commercekit_order_cancellations"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(64), index=True)
    lines: Mapped[list[list[Any]]] = mapped_column(JSON().with_variant(JSONB(), "postgresql"))
    created_at: Mapped[dt.datetime]


class ReturnRow(_Refunded, Base):
    """One return, kept under the caller's id: the same id is never received twice.

    Its `lines` are ``[sku, location, units, restock]``.
    """

    __tablename__ = "commercekit_order_returns"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(64), index=True)
    lines: Mapped[list[list[Any]]] = mapped_column(JSON().with_variant(JSONB(), "postgresql"))
    created_at: Mapped[dt.datetime]
