"""The orders' database (SQLite and a real PostgreSQL) and their stock on a real Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from commercekit.orders import Order, OrderBook
from commercekit.reservations import DurableReservations, RedisReservationStore, ReservationLedger
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
