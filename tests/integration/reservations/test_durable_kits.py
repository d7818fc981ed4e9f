"""Kits kept durable: a Redis flush, drift between Redis and the ledger, a failed write."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from commercekit.errors import BackendUnavailable, InvalidRequest
from commercekit.reservations import (
    DEFAULT_LOCATION,
    Allocation,
    DurableReservations,
    RedisReservationStore,
    ReservationLedger,
    ReservationStatus,
)


@pytest.fixture(params=[1, 4], ids=["one-shard", "four-shards"])
def make(
    engine: AsyncEngine, redis_client: aioredis.Redis, request: pytest.FixtureRequest
) -> Callable[[], DurableReservations]:
    prefix = f"k{uuid.uuid4().hex[:8]}"

    def replica() -> DurableReservations:
        store = RedisReservationStore(
            redis_client, prefix=prefix, guarded=True, shards=request.param
        )
        return DurableReservations(store, ReservationLedger(engine))

    return replica


def _skus(*names: str) -> list[str]:
    tag = uuid.uuid4().hex[:6]
    return [f"{name}-{tag}" for name in names]


async def test_a_redis_flush_restores_kits_and_the_holds_made_with_them(
    make: Callable[[], DurableReservations], redis_client: aioredis.Redis
) -> None:
    one, two = make(), make()
    await one.start()
    mug, tea, box = _skus("MUG", "TEA", "BOX")
    await one.set_stock(mug, 6)
    await one.set_stock(tea, 3)
    await one.define_kit(box, [(mug, 2), (tea, 1)])
    assert (await two.define_kit(box, [(mug, 2), (tea, 1)])).version == 2  # counted once
    hold = await one.reserve([(box, 2)], ttl=60, owner="u1")
    assert await two.available([box]) == {box: 1}

    await redis_client.flushall()

    # Another replica's first call restores Redis: the kit, and the hold's components.
    assert await two.available([box]) == {box: 1}
    assert (await two.kits())[box].version == 2
    assert (await two.store.kits())[box].version == 2
    assert (await two.stock(mug)).held == 4
    released = await two.release(hold.id)
    assert released.lines == hold.lines
    assert set(released.allocations) == {
        Allocation(sku=mug, location=DEFAULT_LOCATION, quantity=4),
        Allocation(sku=tea, location=DEFAULT_LOCATION, quantity=2),
    }
    assert [(await one.stock(s)).available for s in (mug, tea)] == [6, 3]
    later = await one.reserve([(box, 3)], ttl=60, owner="u1")  # one read the kits again
    assert (await one.confirm(later.id)).status is ReservationStatus.CONFIRMED
    assert (await one.ledger.totals_of(mug)) == (6, 6)
    with pytest.raises(InvalidRequest):  # restored: the box's components are known as such
        await one.store.define_kit(tea, [(f"{tea}-LEAF", 1)])
    assert (await one.reconcile()).clean


async def test_reconcile_writes_the_ledgers_kits_into_redis(
    make: Callable[[], DurableReservations],
) -> None:
    one = make()
    await one.start()
    mug, box, gone = _skus("MUG", "BOX", "GONE")
    await one.set_stock(mug, 4)
    await one.define_kit(box, [(mug, 2)])
    # Drift: Redis lost one kit and kept one the ledger never had.
    await one.store.remove_kit(box)
    await one.store.define_kit(gone, [(mug, 1)])
    report = await one.reconcile()
    assert sorted(report.kits_repaired) == sorted([box, gone])
    assert set(await one.store.kits()) == {box}
    assert await one.available([box, gone]) == {box: 2, gone: 0}
    assert (await one.reconcile()).clean


async def test_a_kit_redis_cannot_take_is_not_recorded(
    make: Callable[[], DurableReservations],
) -> None:
    one = make()
    await one.start()
    mug, box = _skus("MUG", "BOX")
    await one.define_kit(box, [(mug, 1)])
    # The same ledger, with a Redis that cannot be reached.
    unreachable = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    store = RedisReservationStore(
        unreachable, prefix=one.store.prefix, guarded=True, shards=one.store.shards
    )
    down = DurableReservations(store, one.ledger)
    with pytest.raises(BackendUnavailable):
        await down.define_kit(box, [(mug, 3)])
    with pytest.raises(BackendUnavailable):
        await down.remove_kit(box)
    kit = (await one.ledger.kits())[box]
    assert (kit.version, kit.components) == (1, (await one.store.kits())[box].components)
    assert kit.components[0].quantity == 1
    await unreachable.aclose()
