"""Backorders and purchase limits kept durable: a Redis flush restores what is owed and what
counts against a limit; reconcile writes a lost cap back."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from commercekit.errors import OutOfStock, PurchaseLimitExceeded
from commercekit.reservations import (
    DEFAULT_LOCATION,
    Allocation,
    DurableReservations,
    RedisReservationStore,
    ReservationLedger,
)


@pytest.fixture(params=[1, 4], ids=["one-shard", "four-shards"])
def make(
    engine: AsyncEngine, redis_client: aioredis.Redis, request: pytest.FixtureRequest
) -> Callable[[], DurableReservations]:
    prefix = f"b{uuid.uuid4().hex[:8]}"

    def replica() -> DurableReservations:
        store = RedisReservationStore(
            redis_client, prefix=prefix, guarded=True, shards=request.param
        )
        return DurableReservations(store, ReservationLedger(engine))

    return replica


async def test_a_redis_flush_restores_the_cap_and_what_is_owed(
    make: Callable[[], DurableReservations], redis_client: aioredis.Redis
) -> None:
    one, two = make(), make()
    await one.start()
    sku = f"PRE-{uuid.uuid4().hex[:6]}"
    await one.set_stock(sku, 1)
    await one.set_backorder(sku, 4)
    hold = await one.reserve([(sku, 3)], ttl=60, owner="u1")
    assert hold.allocations == (
        Allocation(sku=sku, location=DEFAULT_LOCATION, quantity=3, backordered=2),
    )

    await redis_client.flushall()

    level = await two.stock(sku)  # restored from the ledger by this first call
    assert (level.available, level.held, level.backorder) == (-2, 3, 4)
    assert (await two.get(hold.id)).allocations == hold.allocations
    with pytest.raises(OutOfStock):
        await two.reserve([(sku, 3)], ttl=60, owner="u2")
    assert (await two.reserve([(sku, 2)], ttl=60, owner="u2")).backordered == 2
    await two.confirm(hold.id)
    assert (await one.ledger.totals_of(sku)) == (1, 3)
    assert (await one.reconcile()).clean


async def test_reconcile_gives_redis_back_a_cap_it_lost(
    make: Callable[[], DurableReservations], redis_client: aioredis.Redis
) -> None:
    one = make()
    await one.start()
    sku = f"PRE-{uuid.uuid4().hex[:6]}"
    await one.set_stock(sku, 2)
    await one.set_backorder(sku, 5)
    await redis_client.hdel(one.store._stock_key(sku), "backorder")  # drift
    assert await one.available([sku]) == {sku: 2}
    report = await one.reconcile()
    assert await one.available([sku]) == {sku: 7}
    assert (report.caps_repaired, report.stock_repaired) == ({sku: 5}, {})
    assert (await one.reconcile()).clean


async def test_a_redis_flush_keeps_purchase_limits_and_what_counts_against_them(
    make: Callable[[], DurableReservations], redis_client: aioredis.Redis
) -> None:
    one, two = make(), make()
    await one.start()
    sku, other = f"LIM-{uuid.uuid4().hex[:6]}", f"OTH-{uuid.uuid4().hex[:6]}"
    await one.set_stock(sku, 100)
    await one.set_stock(other, 100)
    await one.set_purchase_limit(sku, 4, window=dt.timedelta(hours=1))
    bought = await one.reserve([(sku, 2)], ttl=60, owner="u1")
    await one.confirm(bought.id)
    await one.reserve([(sku, 1), (other, 3)], ttl=60, owner="u1")  # pending

    await redis_client.flushall()

    limit = await two.purchase_limit(sku)  # restored by this first call
    assert limit is not None
    assert (limit.quantity, limit.window) == (4, dt.timedelta(hours=1))
    with pytest.raises(PurchaseLimitExceeded) as error:
        await two.reserve([(sku, 2)], ttl=60, owner="u1")
    assert error.value.over[0].used == 3
    assert (await two.reserve([(sku, 1)], ttl=60, owner="u1")).total_quantity == 1
    assert (await two.reserve([(sku, 4)], ttl=60, owner="u2")).total_quantity == 4
    assert (await one.reconcile()).clean
