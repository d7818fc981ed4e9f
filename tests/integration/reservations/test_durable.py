"""Redis holds and their PostgreSQL records kept together: failures, flushes, restarts, drift."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from commercekit.errors import BackendUnavailable, InvalidTransition
from commercekit.plugins import PluginManager
from commercekit.reservations import (
    DurableReservations,
    RedisReservationStore,
    ReservationLedger,
    ReservationStatus,
)
from commercekit.testing.contracts import assert_conserved
from commercekit.testing.servers import RedisServer, free_port
from tests.unit.plugins.test_plugins import Recorder


@pytest.fixture(params=[1, 4], ids=["one-shard", "four-shards"])
def make(
    engine: AsyncEngine, redis_client: aioredis.Redis, request: pytest.FixtureRequest
) -> Callable[..., DurableReservations]:
    """Replicas of one durable store (same Redis namespace, same ledger), 1 or 4 shards."""
    prefix = f"d{uuid.uuid4().hex[:8]}"

    def replica(client: aioredis.Redis = redis_client) -> DurableReservations:
        store = RedisReservationStore(client, prefix=prefix, guarded=True, shards=request.param)
        return DurableReservations(store, ReservationLedger(engine))

    return replica


ROW_QUERY = """
SELECT status, jsonb_array_length(lines) FROM commercekit_reservations WHERE id = :id
"""


async def _row(engine: AsyncEngine, rid: str) -> tuple[str, int] | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(ROW_QUERY),
                {"id": rid},
            )
        ).first()
    return (row[0], row[1]) if row else None


async def _sold(engine: AsyncEngine, sku: str) -> int:
    async with engine.connect() as conn:
        return int(
            await conn.scalar(text("SELECT sold FROM commercekit_stock WHERE sku = :s"), {"s": sku})
        )


async def test_guarded_store_restores_an_empty_redis_on_start(
    make: Callable[..., DurableReservations],
) -> None:
    durable = make()
    assert not await durable.store.is_hydrated()
    await durable.start()
    assert await durable.store.is_hydrated()
    await durable.set_stock("A", 3)
    assert (await durable.stock("A")).available == 3


async def test_every_transition_reaches_the_ledger_exactly_once(
    make: Callable[..., DurableReservations], engine: AsyncEngine
) -> None:
    durable = make()
    await durable.start()
    await durable.set_stock("A", 10)
    hold = await durable.reserve([("A", 2), ("A", 1)], ttl=60, owner="u1")
    assert await _row(engine, hold.id) == ("PENDING", 1)
    confirmed = await durable.confirm(hold.id)
    assert await _row(engine, hold.id) == ("CONFIRMED", 1)
    assert await _sold(engine, "A") == 3
    # a redelivered transition changes nothing
    assert await durable.ledger.record_transition(confirmed) is False
    with pytest.raises(InvalidTransition):
        await durable.confirm(hold.id)
    assert await _sold(engine, "A") == 3
    released = await durable.reserve([("A", 4)], ttl=60, owner="u1")
    await durable.release(released.id)
    assert await _row(engine, released.id) == ("RELEASED", 1)
    assert await _sold(engine, "A") == 3


async def test_a_hold_whose_record_cannot_be_written_is_released(
    make: Callable[..., DurableReservations], engine: AsyncEngine
) -> None:
    durable = make()
    await durable.start()
    await durable.set_stock("A", 5)
    dead = create_async_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/none")
    broken = DurableReservations(durable.store, ReservationLedger(dead))
    with pytest.raises(BackendUnavailable, match="hold was released"):
        await broken.reserve([("A", 5)], ttl=60, owner="u1")
    await dead.dispose()
    level = await durable.stock("A")
    assert (level.available, level.held) == (5, 0)
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM commercekit_reservations")) == 0


async def test_a_redis_flush_with_holds_outstanding_is_restored_from_the_ledger(
    make: Callable[..., DurableReservations], redis_client: aioredis.Redis
) -> None:
    one, two = make(), make()
    await one.start()
    await one.set_stock("A", 10)
    await one.set_stock("B", 5)
    kept = await one.reserve([("A", 2), ("B", 1)], ttl=60, owner="u1", idempotency_key="cart-1")
    sold = await one.reserve([("A", 3)], ttl=60, owner="u2")
    await one.confirm(sold.id)
    due = await one.reserve([("B", 2)], ttl=0.3, owner="u3")

    await redis_client.flushdb()

    # two replicas notice at once; Redis is restored once, then both proceed
    levels = await asyncio.gather(one.stock("A"), two.stock("B"))
    assert (levels[0].available, levels[0].held, levels[0].sold) == (5, 2, 3)
    assert (levels[1].available, levels[1].held) == (2, 3)
    assert (await one.get(kept.id)).status is ReservationStatus.PENDING
    assert (await one.get(sold.id)).status is ReservationStatus.CONFIRMED  # from the ledger
    replay = await two.reserve([("A", 2), ("B", 1)], ttl=60, owner="u1", idempotency_key="cart-1")
    assert replay.id == kept.id
    await assert_conserved(one, {"A": 10, "B": 5}, [kept, sold, due])

    await asyncio.sleep(0.35)
    assert [r.id for r in await two.expire_due()] == [due.id]
    assert (await one.confirm(kept.id)).status is ReservationStatus.CONFIRMED
    await assert_conserved(one, {"A": 10, "B": 5}, [kept, sold, due])


async def test_a_redis_restart_without_persistence_is_restored(
    make: Callable[..., DurableReservations], tmp_path: Path
) -> None:
    with RedisServer(tmp_path) as private:
        # A client that retries on a dropped connection, as production ones should.
        client = aioredis.from_url(
            private.url,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=5),
            retry_on_error=[RedisConnectionError],
        )
        durable = make(client)
        await durable.start()
        await durable.set_stock("A", 4)
        hold = await durable.reserve([("A", 3)], ttl=60, owner="u1")
        await asyncio.to_thread(private.restart)  # comes back empty
        assert (await durable.stock("A")).held == 3
        assert (await durable.release(hold.id)).status is ReservationStatus.RELEASED
        assert (await durable.stock("A")).available == 4
        await client.aclose()


async def test_reconcile_repairs_what_a_crash_between_redis_and_the_ledger_left(
    make: Callable[..., DurableReservations], engine: AsyncEngine
) -> None:
    durable = make()
    await durable.start()
    await durable.set_stock("A", 10)
    confirmed_behind = await durable.reserve([("A", 2)], ttl=60, owner="u1")
    await durable.store.confirm(confirmed_behind.id)  # the ledger never heard of it
    unrecorded = await durable.store.reserve([("A", 1)], ttl=60, owner="u2")  # no row
    await durable.store.adjust("A", 5)  # stock changed in Redis only

    report = await durable.reconcile()

    assert report.transitions_recorded == [confirmed_behind.id]
    assert report.records_added == [unrecorded.id]
    assert report.stock_repaired == {"A": -5}
    assert await _row(engine, confirmed_behind.id) == ("CONFIRMED", 1)
    assert await _row(engine, unrecorded.id) == ("PENDING", 1)
    assert await _sold(engine, "A") == 2
    await assert_conserved(durable, {"A": 10}, [confirmed_behind, unrecorded])
    assert (await durable.reconcile()).clean


async def test_plugins_hear_each_transition_once_whatever_is_retried(
    make: Callable[..., DurableReservations],
) -> None:
    heard = Recorder()
    plugins = PluginManager([heard], load_entrypoints=False)
    one, two = make(), make()
    one.plugins = two.plugins = plugins
    await one.start()
    await one.set_stock("A", 10)
    paid = await one.reserve([("A", 1)], ttl=60, owner="u", idempotency_key="k")
    assert (await two.reserve([("A", 1)], ttl=60, owner="u", idempotency_key="k")).id == paid.id
    await one.confirm(paid.id)
    with pytest.raises(InvalidTransition):
        await two.confirm(paid.id)  # a redelivered payment
    cancelled = await one.reserve([("A", 1)], ttl=60, owner="u")
    await two.release(cancelled.id)
    late = await one.reserve([("A", 1)], ttl=0.05, owner="u")
    await asyncio.sleep(0.1)
    swept = await asyncio.gather(one.expire_due(), two.expire_due())
    assert sum(len(batch) for batch in swept) == 1

    assert sorted(heard.calls) == sorted(
        [
            ("created", paid.id),
            ("confirmed", paid.id),
            ("created", cancelled.id),
            ("released", cancelled.id),
            ("created", late.id),
            ("expired", late.id),
        ]
    )
