"""`DurableReservations(batch_records=True)`: records written in batches, still one per hold."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from commercekit.errors import BackendUnavailable, OutOfStock
from commercekit.reservations import (
    DurableReservations,
    RedisReservationStore,
    Reservation,
    ReservationLedger,
)
from commercekit.testing.servers import RedisServer


@pytest.fixture
async def durable(
    engine: AsyncEngine, redis_server: RedisServer
) -> AsyncIterator[DurableReservations]:
    client = aioredis.from_url(redis_server.url)
    store = RedisReservationStore(
        client, prefix=f"b{uuid.uuid4().hex[:8]}", guarded=True, pipeline=True
    )
    reservations = DurableReservations(store, ReservationLedger(engine), batch_records=True)
    await reservations.start()
    yield reservations
    await client.aclose()


async def _rows(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set((await conn.execute(text("SELECT id FROM commercekit_reservations"))).scalars())


async def test_every_hold_has_its_record_when_it_returns(
    durable: DurableReservations, engine: AsyncEngine
) -> None:
    await durable.set_stock("hot", 100)
    seen: list[Reservation] = []

    async def buyer() -> None:
        for _ in range(5):
            try:
                hold = await durable.reserve([("hot", 1)], ttl=60, owner="u")
            except OutOfStock:
                return
            # The record is committed before the caller hears of its hold.
            assert await durable.ledger.get(hold.id) is not None
            seen.append(hold)

    await asyncio.gather(*(buyer() for _ in range(40)))
    assert len(seen) == 100
    assert await _rows(engine) == {h.id for h in seen}
    level = await durable.stock("hot")
    assert (level.available, level.held) == (0, 100)


async def test_a_replay_is_not_recorded_twice(durable: DurableReservations) -> None:
    await durable.set_stock("sku", 10)
    first, again = await asyncio.gather(
        durable.reserve([("sku", 2)], ttl=60, owner="u", idempotency_key="k"),
        durable.reserve([("sku", 2)], ttl=60, owner="u", idempotency_key="k"),
    )
    assert first.id == again.id
    assert (await durable.stock("sku")).held == 2


async def test_a_failed_batch_releases_each_of_its_holds(
    durable: DurableReservations, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    await durable.set_stock("sku", 10)

    async def down(reservations: object) -> list[bool]:
        raise OSError("ledger down")

    monkeypatch.setattr(durable.ledger, "record_created_many", down)
    results = await asyncio.gather(
        *(durable.reserve([("sku", 1)], ttl=60, owner="u") for _ in range(4)),
        return_exceptions=True,
    )
    assert all(isinstance(r, BackendUnavailable) for r in results)
    level = await durable.stock("sku")
    assert (level.available, level.held) == (10, 0)
    assert await _rows(engine) == set()
