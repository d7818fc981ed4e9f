"""Stock in many places kept durable: a Redis flush, drift, and the data of before locations."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from commercekit.reservations import (
    Allocation,
    Channel,
    DurableReservations,
    RedisReservationStore,
    ReservationLedger,
    ReservationStatus,
)
from commercekit.sql import migrate
from commercekit.testing.servers import PostgresServer

WEB = Channel("web", ["east", "west"])


@pytest.fixture(params=[1, 4], ids=["one-shard", "four-shards"])
def make(
    engine: AsyncEngine, redis_client: aioredis.Redis, request: pytest.FixtureRequest
) -> Callable[[], DurableReservations]:
    prefix = f"l{uuid.uuid4().hex[:8]}"

    def replica() -> DurableReservations:
        store = RedisReservationStore(
            redis_client, prefix=prefix, guarded=True, shards=request.param
        )
        return DurableReservations(store, ReservationLedger(engine))

    return replica


async def _levels(store: DurableReservations, sku: str) -> dict[str, tuple[int, int, int]]:
    return {
        place: (level.available, level.held, level.sold)
        for place, level in (await store.stock_by_location(sku)).items()
    }


async def test_a_redis_flush_restores_each_location_and_each_allocation(
    make: Callable[[], DurableReservations], redis_client: aioredis.Redis
) -> None:
    one, two = make(), make()
    await one.start()
    a, b = f"A-{uuid.uuid4().hex[:6]}", f"B-{uuid.uuid4().hex[:6]}"
    await one.set_stock(a, 3, location="east")
    await one.set_stock(a, 10, location="west")
    await one.set_stock(b, 4, location="west")
    await one.set_stock(b, 1)  # the default location, outside the channel
    split = await one.reserve([(a, 5), (b, 2)], ttl=60, owner="u1", channel=WEB)
    assert set(split.allocations) == {
        Allocation(sku=a, location="east", quantity=3),
        Allocation(sku=a, location="west", quantity=2),
        Allocation(sku=b, location="west", quantity=2),
    }
    sold = await one.reserve([(a, 1)], ttl=60, owner="u2", channel=WEB)
    await one.confirm(sold.id)
    before = {sku: await _levels(one, sku) for sku in (a, b)}
    assert before[a] == {"east": (0, 3, 0), "west": (7, 2, 1)}

    for key in [k async for k in redis_client.scan_iter(match=f"{one.store.prefix}:*")]:
        await redis_client.delete(key)  # Redis lost this store's data

    assert {sku: await _levels(two, sku) for sku in (a, b)} == before
    assert await two.get(split.id) == split
    await two.release(split.id)
    assert await _levels(one, a) == {"east": (3, 0, 0), "west": (9, 0, 1)}
    assert await _levels(one, b) == {"default": (1, 0, 0), "west": (4, 0, 0)}
    assert (await one.reconcile()).clean


async def test_reconcile_repairs_drift_at_the_location_it_happened(
    make: Callable[[], DurableReservations],
) -> None:
    durable = make()
    await durable.start()
    sku = f"A-{uuid.uuid4().hex[:6]}"
    await durable.set_stock(sku, 5, location="east")
    await durable.set_stock(sku, 5)
    await durable.store.adjust(sku, 2, location="east")  # in Redis only
    report = await durable.reconcile()
    assert report.stock_repaired == {f"{sku}@east": -2}
    assert (await durable.stock(sku, location="east")).available == 5
    assert (await durable.stock(sku)).available == 5
    assert (await durable.reconcile()).clean


async def test_concurrent_channel_reserves_and_confirms_add_up_in_the_ledger(
    make: Callable[[], DurableReservations], engine: AsyncEngine
) -> None:
    one, two = make(), make()
    await one.start()
    sku = f"A-{uuid.uuid4().hex[:6]}"
    await one.set_stock(sku, 6, location="east")
    await one.set_stock(sku, 6, location="west")

    async def buy(store: DurableReservations) -> int:
        hold = await store.reserve([(sku, 1)], ttl=60, owner="u", channel=WEB)
        await store.confirm(hold.id)
        return 1

    assert sum(await asyncio.gather(*(buy(one if i % 2 else two) for i in range(12)))) == 12
    async with engine.connect() as conn:
        rows = dict(
            (
                await conn.execute(
                    text("SELECT location, sold FROM commercekit_stock WHERE sku = :s"), {"s": sku}
                )
            ).all()
        )
    assert rows == {"east": 6, "west": 6}
    assert await _levels(one, sku) == {"east": (0, 0, 6), "west": (0, 0, 6)}


async def test_a_ledger_of_before_locations_migrates_to_the_default_location(
    postgres_server: PostgresServer,
) -> None:
    url = postgres_server.create_database(f"loc_{uuid.uuid4().hex[:8]}")
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        await migrate(engine, "reservations@reservations_0001")
        async with engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO commercekit_stock (sku, added, sold) VALUES ('old', 10, 3)")
            )
            await conn.execute(
                text(
                    "INSERT INTO commercekit_reservations (id, owner, status, lines, "
                    "created_at, updated_at, expires_at) VALUES ('r-old', 'u', 'PENDING', "
                    """'[["old", 2]]', now(), now(), now() + interval '1 hour')"""
                )
            )
        await migrate(engine)
        ledger = ReservationLedger(engine)
        assert await ledger.location_totals() == {("old", "default"): (10, 3)}
        (level,), (pending,) = await ledger.snapshot()
        assert (level.location, level.available, level.held, level.sold) == ("default", 5, 2, 3)
        assert pending.allocations == ()
        assert pending.holdings == (Allocation(sku="old", location="default", quantity=2),)
        assert pending.status is ReservationStatus.PENDING
    finally:
        await engine.dispose()
