"""The orders' database (SQLite and a real PostgreSQL) and their stock on a real Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from decimal import Decimal

import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from commercekit.orders import Order, OrderBook
from commercekit.payments import PaymentIntent, RefundService, SimulatedProcessor
from commercekit.reservations import (
    DurableReservations,
    RedisReservationStore,
    Reservation,
    ReservationLedger,
)
from commercekit.sql import migrate
from commercekit.testing.servers import RedisServer


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url)
    await migrate(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
async def stock(
    engine: AsyncEngine, redis_server: RedisServer
) -> AsyncIterator[DurableReservations]:
    client = aioredis.from_url(redis_server.url)
    store = RedisReservationStore(client, prefix=f"c{uuid.uuid4().hex[:8]}", guarded=True)
    durable = DurableReservations(store, ReservationLedger(engine))
    await durable.start()
    yield durable
    await client.aclose()


@pytest.fixture
def book(engine: AsyncEngine, stock: DurableReservations) -> OrderBook:
    return OrderBook(engine, stock=stock)


async def paid(stock: DurableReservations, book: OrderBook, *lines: tuple[str, int]) -> Order:
    """An order of `lines`, its units in stock (exactly those), reserved and confirmed."""
    for sku, units in lines:
        await stock.set_stock(sku, units)
    hold = await stock.reserve(list(lines), ttl=60, owner="alice")
    return await book.open(await stock.confirm(hold.id))


async def levels(stock: DurableReservations, sku: str) -> tuple[int, int, int]:
    level = await stock.stock(sku)
    return level.available, level.held, level.sold


def sku(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def processor() -> SimulatedProcessor:
    return SimulatedProcessor(seed=1)


@pytest.fixture
def refunds(engine: AsyncEngine, processor: SimulatedProcessor) -> RefundService:
    return RefundService(async_sessionmaker(engine, expire_on_commit=False), processor)


class Shop:
    """Prices, a stock and an order book that refunds through `refunds`."""

    def __init__(
        self,
        engine: AsyncEngine,
        stock: DurableReservations,
        refunds: RefundService,
        processor: SimulatedProcessor,
    ) -> None:
        self.prices: dict[str, Decimal] = {}
        self.stock, self.refunds, self.processor = stock, refunds, processor
        self.book = OrderBook(engine, stock=stock, refunds=refunds, prices=self.price_of)

    def price_of(self, reservation: Reservation) -> Mapping[str, Decimal]:
        return self.prices

    async def order(self, *lines: tuple[str, int, str], pay: str | None = None) -> Order:
        """An order of ``(sku, units, unit price)`` lines, paid in full (or `pay`)."""
        for name, units, price in lines:
            await self.stock.set_stock(name, units)
            self.prices[name] = Decimal(price)
        hold = await self.stock.reserve([(n, u) for n, u, _ in lines], ttl=60, owner="alice")
        total = sum((Decimal(p) * u for _, u, p in lines), start=Decimal(0))
        payment = await self.processor.charge(
            PaymentIntent(
                idempotency_key=str(uuid.uuid4()),
                reservation_id=hold.id,
                user_id="alice",
                amount=Decimal(pay) if pay else total,
                currency="EUR",
                payment_method="tok_success",
            )
        )
        self.payment = payment
        return await self.book.open(await self.stock.confirm(hold.id), payment=payment)


@pytest.fixture
def shop(
    engine: AsyncEngine,
    stock: DurableReservations,
    refunds: RefundService,
    processor: SimulatedProcessor,
) -> Shop:
    return Shop(engine, stock, refunds, processor)
