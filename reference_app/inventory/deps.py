"""The inventory service's adapters, built in `reference_app.inventory.main.wire`."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated

from fastapi import Depends, Request
from prometheus_client import Counter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from commercekit.orders import OrderBook
from commercekit.payments import Money
from commercekit.reservations import (
    DEFAULT_LOCATION,
    Channel,
    ChannelLocation,
    DurableReservations,
    Reservation,
    StockWatch,
)
from reference_app.common.errors import ApiError
from reference_app.inventory.models import Product, SalesChannel, StockLocation
from reference_app.settings import InventorySettings

__all__ = [
    "ChannelCache",
    "InventoryServices",
    "ProductCache",
    "ProductInfo",
    "ServicesDep",
    "get_services",
    "known_location",
]


@dataclass(frozen=True, slots=True)
class ProductInfo:
    """What the reserve path needs of a product; a product never changes once created."""

    id: uuid.UUID
    sku: str
    name: str
    price: Decimal

    @classmethod
    def of(cls, product: Product) -> ProductInfo:
        """The info of a ``products`` row."""
        return cls(id=product.id, sku=product.sku, name=product.name, price=product.price)


class ProductCache:
    """Products by id and by SKU, read from PostgreSQL once per process.

    Safe with replicas: products are only ever added (a miss reads the
    table), never changed or deleted. Bounded: the oldest entries go first.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], size: int = 10_000) -> None:
        self.sessions = sessions
        self.size = size
        self._by_id: dict[uuid.UUID, ProductInfo] = {}
        self._by_sku: dict[str, ProductInfo] = {}

    def _keep(self, products: Iterable[Product]) -> None:
        for product in products:
            info = ProductInfo.of(product)
            self._by_id[info.id] = info
            self._by_sku[info.sku] = info
        while len(self._by_id) > self.size:
            oldest = self._by_id.pop(next(iter(self._by_id)))
            self._by_sku.pop(oldest.sku, None)

    async def by_ids(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, ProductInfo]:
        """The products with these ids (those that exist)."""
        wanted = set(ids)
        missing = wanted - self._by_id.keys()
        if missing:
            async with self.sessions() as session:
                self._keep(await session.scalars(select(Product).where(Product.id.in_(missing))))
        return {i: self._by_id[i] for i in wanted if i in self._by_id}

    async def by_skus(self, skus: Iterable[str]) -> dict[str, ProductInfo]:
        """The products of these SKUs (those that exist)."""
        wanted = set(skus)
        missing = wanted - self._by_sku.keys()
        if missing:
            async with self.sessions() as session:
                self._keep(await session.scalars(select(Product).where(Product.sku.in_(missing))))
        return {s: self._by_sku[s] for s in wanted if s in self._by_sku}

    async def unit_prices(self, reservation: Reservation) -> dict[str, Decimal]:
        """The prices of the SKUs `reservation` holds (a kit's components too).

        An order splits its payment over its lines by these (`UnitPrices`); a
        SKU whose product is gone is left out, and the order splits by units.
        """
        found = await self.by_skus(holding.sku for holding in reservation.holdings)
        return {sku: product.price for sku, product in found.items()}


class ChannelCache:
    """The sales channels by name, read from PostgreSQL at most every `ttl` seconds.

    A channel an admin changes is seen by every replica within `ttl` (the
    reserve path then reads no row per request).
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], ttl: float = 5.0) -> None:
        self.sessions = sessions
        self.ttl = ttl
        self._channels: dict[str, Channel] = {}
        self._read_at = float("-inf")

    async def get(self, name: str) -> Channel | None:
        """The channel `name`, or None if there is none (as read at most `ttl` seconds ago).

        An unknown name does not read the table again: anyone may ask for any
        channel on the public product list, and each ask must not cost a query.
        """
        if time.monotonic() - self._read_at > self.ttl:
            await self.refresh()
        return self._channels.get(name)

    async def all(self) -> list[Channel]:
        """Every channel, by name."""
        await self.refresh()
        return [self._channels[name] for name in sorted(self._channels)]

    async def refresh(self) -> None:
        """Read every channel again."""
        async with self.sessions() as session:
            rows = (await session.scalars(select(SalesChannel))).all()
        self._channels = {
            row.name: Channel(
                row.name,
                [
                    ChannelLocation(place, safety_stock=int(safety))
                    for place, safety in row.locations
                ],
                strategy=row.strategy,
                split=row.split,
            )
            for row in rows
        }
        self._read_at = time.monotonic()


@dataclass(frozen=True, slots=True)
class InventoryServices:
    """Everything the routes use; tests may swap any part through ``dependency_overrides``.

    Attributes:
        settings: the service's settings.
        engine: the database (reads of one statement, outside a session).
        sessions: database sessions (the ``products`` table).
        products: the products, cached.
        channels: the sales channels, cached for a few seconds.
        reservations: commercekit's stock holds (Redis) with their ledger (PostgreSQL).
        orders: the paid reservations' orders and their shipments (PostgreSQL).
        watch: the products' low-stock thresholds (the worker announces the changes).
        outcomes: ``refapp_inventory_reservations_total`` by outcome.
    """

    settings: InventorySettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    products: ProductCache
    channels: ChannelCache
    reservations: DurableReservations
    orders: OrderBook
    watch: StockWatch
    outcomes: Counter

    async def total(self, reservation: Reservation) -> Money | None:
        """What paying for `reservation` costs at the products' prices (None: a product is gone)."""
        products = await self.products.by_skus(line.sku for line in reservation.lines)
        if len(products) != len({line.sku for line in reservation.lines}):
            return None
        amount = sum(
            (products[line.sku].price * line.quantity for line in reservation.lines),
            start=Decimal(0),
        )
        return Money(amount=amount, currency=self.settings.currency)


async def known_location(services: InventoryServices, name: str) -> None:
    """404 unless `name` is the default location or one an admin created."""
    if name == DEFAULT_LOCATION:
        return
    async with services.sessions() as session:
        if await session.get(StockLocation, name) is None:
            raise ApiError(404, f"location {name} not found", code="location_not_found")


async def get_services(request: Request) -> InventoryServices:
    """The services wired at start."""
    services: InventoryServices = request.app.state.inventory
    return services


ServicesDep = Annotated[InventoryServices, Depends(get_services)]
