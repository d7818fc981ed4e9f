"""The inventory service's adapters, built in `reference_app.inventory.main.wire`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated

from fastapi import Depends, Request
from prometheus_client import Counter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from commercekit.payments import Money
from commercekit.reservations import DurableReservations, Reservation
from reference_app.inventory.models import Product
from reference_app.settings import InventorySettings

__all__ = ["InventoryServices", "ServicesDep"]


@dataclass(frozen=True, slots=True)
class InventoryServices:
    """Everything the routes use; tests may swap any part through ``dependency_overrides``.

    Attributes:
        settings: the service's settings.
        sessions: database sessions (the ``products`` table).
        reservations: commercekit's stock holds (Redis) with their ledger (PostgreSQL).
        outcomes: ``refapp_inventory_reservations_total`` by outcome.
    """

    settings: InventorySettings
    sessions: async_sessionmaker[AsyncSession]
    reservations: DurableReservations
    outcomes: Counter

    async def products_by_sku(self, skus: Sequence[str]) -> dict[str, Product]:
        """The products of these SKUs (those that exist)."""
        async with self.sessions() as session:
            rows = await session.scalars(select(Product).where(Product.sku.in_(set(skus))))
            return {product.sku: product for product in rows}

    async def total(self, reservation: Reservation) -> Money | None:
        """What paying for `reservation` costs at today's prices (None: a product is gone)."""
        products = await self.products_by_sku([line.sku for line in reservation.lines])
        if len(products) != len({line.sku for line in reservation.lines}):
            return None
        amount = sum(
            (products[line.sku].price * line.quantity for line in reservation.lines),
            start=Decimal(0),
        )
        return Money(amount=amount, currency=self.settings.currency)


def get_services(request: Request) -> InventoryServices:
    """The services wired at start."""
    services: InventoryServices = request.app.state.inventory
    return services


ServicesDep = Annotated[InventoryServices, Depends(get_services)]
