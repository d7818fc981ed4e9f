"""Amended holds kept durable: the ledger records the new cart; a flush and reconcile agree."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from commercekit.reservations import (
    DurableReservations,
    RedisReservationStore,
    ReservationLedger,
)


@pytest.fixture
def make(engine: AsyncEngine, redis_client: aioredis.Redis) -> Callable[[], DurableReservations]:
    prefix = f"a{uuid.uuid4().hex[:8]}"

    def replica() -> DurableReservations:
        store = RedisReservationStore(redis_client, prefix=prefix, guarded=True)
        return DurableReservations(store, ReservationLedger(engine))

    return replica


async def test_an_amendment_reaches_the_ledger_and_survives_a_flush(
    make: Callable[[], DurableReservations], redis_client: aioredis.Redis
) -> None:
    one, two = make(), make()
    await one.start()
    a, b = f"A-{uuid.uuid4().hex[:6]}", f"B-{uuid.uuid4().hex[:6]}"
    await one.set_stock(a, 3)
    await one.set_stock(b, 3)
    hold = await one.reserve([(a, 1)], ttl=60, owner="u1")
    amended = await one.amend(hold.id, [(a, 2), (b, 1)])
    recorded = await one.ledger.get(hold.id)
    assert recorded is not None
    assert recorded.lines == amended.lines

    await redis_client.flushall()

    assert (await two.stock(a)).held == 2  # restored from the ledger
    assert (await two.stock(b)).held == 1
    confirmed = await two.confirm(hold.id)
    assert confirmed.lines == amended.lines
    assert (await one.ledger.totals_of(b)) == (3, 1)
    assert (await one.reconcile()).clean


async def test_reconcile_records_an_amendment_the_ledger_missed(
    make: Callable[[], DurableReservations],
) -> None:
    one = make()
    await one.start()
    a = f"A-{uuid.uuid4().hex[:6]}"
    await one.set_stock(a, 5)
    hold = await one.reserve([(a, 1)], ttl=60, owner="u1")
    amended = await one.store.amend(hold.id, [(a, 4)])  # Redis only: a crash before the ledger
    report = await one.reconcile()
    assert report.amends_recorded == [hold.id]
    recorded = await one.ledger.get(hold.id)
    assert recorded is not None
    assert recorded.lines == amended.lines
    assert (await one.reconcile()).clean
