"""An idempotency key replays its reservation for its whole `idempotency_ttl`, across Redis loss.

Redis keeps the keys; after a flush or a restart the ledger restores them,
for every reservation made within the TTL, whatever its state: a retry
with the key of a confirmed, released or expired reservation gets that
reservation back, never a second hold.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from commercekit.errors import IdempotencyConflict
from commercekit.reservations import (
    DurableReservations,
    RedisReservationStore,
    ReservationLedger,
    ReservationStatus,
)


@pytest.fixture(params=[1, 4], ids=["one-shard", "four-shards"])
def make(
    engine: AsyncEngine, redis_client: aioredis.Redis, request: pytest.FixtureRequest
) -> Callable[..., DurableReservations]:
    """Replicas of one durable store (same Redis namespace, same ledger)."""
    prefix = f"i{uuid.uuid4().hex[:8]}"

    def replica(idempotency_ttl: dt.timedelta = dt.timedelta(days=1)) -> DurableReservations:
        store = RedisReservationStore(
            redis_client,
            prefix=prefix,
            guarded=True,
            shards=request.param,
            idempotency_ttl=idempotency_ttl,
        )
        return DurableReservations(store, ReservationLedger(engine))

    return replica


async def _rows(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text("SELECT count(*) FROM commercekit_reservations")))


async def test_a_key_replays_a_settled_reservation_after_redis_is_flushed(
    make: Callable[..., DurableReservations], redis_client: aioredis.Redis, engine: AsyncEngine
) -> None:
    one = make()
    await one.start()
    await one.set_stock("A", 10)
    await one.set_stock("B", 10)
    confirmed = await one.reserve([("A", 2), ("B", 1)], ttl=60, owner="u1", idempotency_key="k1")
    await one.confirm(confirmed.id)
    released = await one.reserve([("A", 1)], ttl=60, owner="u1", idempotency_key="k2")
    await one.release(released.id)
    expired = await one.reserve([("B", 3)], ttl=0.2, owner="u2", idempotency_key="k3")
    pending = await one.reserve([("A", 4)], ttl=60, owner="u2", idempotency_key="k4")
    await asyncio.sleep(0.25)
    assert [r.id for r in await one.expire_due()] == [expired.id]
    before = (await one.stock("A"), await one.stock("B"))

    await redis_client.flushdb()

    two = make()  # another replica: what comes back comes from the ledger
    again = {
        "k1": await two.reserve([("A", 2), ("B", 1)], ttl=60, owner="u1", idempotency_key="k1"),
        "k2": await two.reserve([("A", 1)], ttl=60, owner="u1", idempotency_key="k2"),
        "k3": await two.reserve([("B", 3)], ttl=60, owner="u2", idempotency_key="k3"),
        "k4": await two.reserve([("A", 4)], ttl=60, owner="u2", idempotency_key="k4"),
    }
    assert {k: (r.id, r.status) for k, r in again.items()} == {
        "k1": (confirmed.id, ReservationStatus.CONFIRMED),
        "k2": (released.id, ReservationStatus.RELEASED),
        "k3": (expired.id, ReservationStatus.EXPIRED),
        "k4": (pending.id, ReservationStatus.PENDING),
    }
    assert (await two.stock("A"), await two.stock("B")) == before, "no new hold"
    assert await _rows(engine) == 4, "no new record"
    with pytest.raises(IdempotencyConflict):
        await two.reserve([("A", 9)], ttl=60, owner="u1", idempotency_key="k1")
    # The key is the owner's: another owner's same key is a new reservation.
    other = await two.reserve([("A", 1)], ttl=60, owner="u3", idempotency_key="k1")
    assert other.id not in {r.id for r in again.values()}


async def test_a_key_replays_after_a_second_loss_too(
    make: Callable[..., DurableReservations], redis_client: aioredis.Redis
) -> None:
    durable = make()
    await durable.start()
    await durable.set_stock("A", 5)
    first = await durable.reserve([("A", 2)], ttl=60, owner="u", idempotency_key="k")
    await durable.confirm(first.id)
    for _ in range(2):
        await redis_client.flushdb()
        replay = await durable.reserve([("A", 2)], ttl=60, owner="u", idempotency_key="k")
        assert (replay.id, replay.status) == (first.id, ReservationStatus.CONFIRMED)
    level = await durable.stock("A")
    assert (level.available, level.held, level.sold) == (3, 0, 2)


async def test_a_key_past_its_ttl_is_not_restored(
    make: Callable[..., DurableReservations], redis_client: aioredis.Redis
) -> None:
    durable = make(idempotency_ttl=dt.timedelta(milliseconds=300))
    await durable.start()
    await durable.set_stock("A", 5)
    first = await durable.reserve([("A", 2)], ttl=60, owner="u", idempotency_key="k")
    await durable.confirm(first.id)
    await asyncio.sleep(0.35)
    await redis_client.flushdb()
    later = await durable.reserve([("A", 2)], ttl=60, owner="u", idempotency_key="k")
    assert later.id != first.id, "past its TTL, a key is free again, as without the loss"
    assert later.status is ReservationStatus.PENDING
