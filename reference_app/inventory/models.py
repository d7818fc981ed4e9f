"""The ``products``, ``stock_locations`` and ``sales_channels`` tables (``products_000x``).

Stock is not a column here: commercekit's reservation store keeps it (Redis
holds, the PostgreSQL ledger ``commercekit_stock``), keyed by the SKU and
the location.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, CheckConstraint, DateTime, Index, Numeric, String, Uuid, func
from sqlalchemy.orm import Mapped, mapped_column

from reference_app.common.db import AppBase

__all__ = ["Product", "SalesChannel", "StockLocation"]


class Product(AppBase):
    """A product for sale; its SKU names its stock in the reservation store."""

    __tablename__ = "products"

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True, default=uuid.uuid4)
    sku: Mapped[str] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    price: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    __table_args__ = (
        CheckConstraint("price > 0", name="price_positive"),
        Index("ix_products_created_at", "created_at", "id"),
    )


class StockLocation(AppBase):
    """A place stock is kept (a warehouse, a shop); stock can be set only at a known one."""

    __tablename__ = "stock_locations"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    label: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class SalesChannel(AppBase):
    """Where a channel sells from (``[[location, safety stock], ...]``, first choice first)."""

    __tablename__ = "sales_channels"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    locations: Mapped[list[list[Any]]] = mapped_column(JSON())
    strategy: Mapped[str] = mapped_column(String(16))
    split: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
