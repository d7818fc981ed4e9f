"""Sold units back on sale, exactly once per move: retries, crashes between halves, a flush."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from commercekit.errors import BackendUnavailable, InvalidRequest, StockConflict
from commercekit.reservations import (
    Channel,
    DurableReservations,
    RedisReservationStore,
    ReservationLedger,
    SoldUnits,
)


@pytest.fixture(params=[1, 4], ids=["one-shard", "four-shards"])
def make(
    engine: AsyncEngine, redis_client: aioredis.Redis, request: pytest.FixtureRequest
) -> Callable[[], DurableReservations]:
    prefix = f"m{uuid.uuid4().hex[:8]}"

    def replica() -> DurableReservations:
        store = RedisReservationStore(
            redis_client, prefix=prefix, guarded=True, shards=request.param
        )
        return DurableReservations(store, ReservationLedger(engine))

    return replica


EAST = Channel("east", ["east"])


async def _sold(
    store: DurableReservations, lines: list[tuple[str, int]], channel: Channel | None = None
) -> str:
    hold = await store.reserve(lines, ttl=60, owner="u1", channel=channel)
    await store.confirm(hold.id)
    return hold.id


async def _level(store: DurableReservations, sku: str, where: str = "default") -> tuple[int, ...]:
    level = await store.stock(sku, location=where)
    return level.available, level.held, level.sold


async def _ledger(
    store: DurableReservations, sku: str, location: str = "default"
) -> tuple[int, int]:
    return await store.ledger.totals_of(sku, location=location)


async def died(*args: object) -> bool:
    """A stand-in for a call the process dies in."""
    raise ConnectionResetError("the process died here")


def _sku() -> str:
    return f"S-{uuid.uuid4().hex[:8]}"


async def test_units_come_back_once_however_often_the_move_is_made(
    make: Callable[[], DurableReservations],
) -> None:
    store = make()
    await store.start()
    mug = _sku()
    await store.set_stock(mug, 5)
    await _sold(store, [(mug, 3)])

    move = [SoldUnits(sku=mug, quantity=2)]
    assert await store.return_sold("cancel:o-1", move) is True
    assert await _level(store, mug) == (4, 0, 1)
    assert await _ledger(store, mug) == (5, 1)
    for _ in range(3):  # a retry, a redelivered event, a replica
        assert await make().return_sold("cancel:o-1", move) is False
    assert await _level(store, mug) == (4, 0, 1)
    assert await _ledger(store, mug) == (5, 1)
    assert (await store.reconcile()).clean


async def test_concurrent_copies_of_one_move_move_its_units_once(
    make: Callable[[], DurableReservations],
) -> None:
    store = make()
    await store.start()
    mug, cap = _sku(), _sku()
    await store.set_stock(mug, 10)
    await store.set_stock(cap, 10)
    await _sold(store, [(mug, 6), (cap, 4)])
    move = [SoldUnits(sku=mug, quantity=5), SoldUnits(sku=cap, quantity=4)]
    replicas = [make() for _ in range(12)]
    recorded = await asyncio.gather(*(r.return_sold("cancel:o-2", move) for r in replicas))
    assert sorted(recorded) == [False] * 11 + [True]
    assert await _level(store, mug) == (9, 0, 1)
    assert await _level(store, cap) == (10, 0, 0)
    assert await _ledger(store, mug) == (10, 1)
    assert (await store.reconcile()).clean


async def test_a_crash_between_the_ledger_and_redis_never_sells_units_twice(
    make: Callable[[], DurableReservations], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make()
    await store.start()
    mug = _sku()
    await store.set_stock(mug, 4, location="east")
    await _sold(store, [(mug, 4)], EAST)
    move = [SoldUnits(sku=mug, location="east", quantity=3)]

    monkeypatch.setattr(store.store, "return_sold", died)
    with pytest.raises(ConnectionResetError):
        await store.return_sold("return:r-1", move)
    monkeypatch.undo()
    # The ledger has it, Redis not yet: the units are not sellable, not twice either.
    assert await _ledger(store, mug, "east") == (4, 1)
    assert await _level(store, mug, "east") == (0, 0, 4)

    report = await make().reconcile()
    assert report.moves_applied == ["return:r-1"]
    assert await _level(store, mug, "east") == (3, 0, 1)
    assert (await store.reconcile()).clean
    assert await store.return_sold("return:r-1", move) is False  # the caller's retry
    assert await _level(store, mug, "east") == (3, 0, 1)


async def test_a_move_redis_made_is_remembered_when_only_its_mark_was_lost(
    make: Callable[[], DurableReservations], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make()
    await store.start()
    mug = _sku()
    await store.set_stock(mug, 2)
    await _sold(store, [(mug, 2)])

    async def crash(move_id: str) -> None:
        raise ConnectionResetError("the process died after redis answered")

    monkeypatch.setattr(store.ledger, "mark_applied", crash)
    with pytest.raises(BackendUnavailable, match="made in redis"):
        await store.return_sold("cancel:o-3", [SoldUnits(sku=mug, quantity=2)])
    monkeypatch.undo()
    assert await _level(store, mug) == (2, 0, 0)
    assert (await store.reconcile()).moves_applied == ["cancel:o-3"]
    assert await _level(store, mug) == (2, 0, 0)  # not 4
    assert (await store.reconcile()).clean


async def test_a_redis_flush_before_redis_made_the_move_restores_it_made_once(
    make: Callable[[], DurableReservations],
    redis_client: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = make()
    await store.start()
    mug, cap = _sku(), _sku()
    await store.set_stock(mug, 5)
    await store.set_stock(cap, 5)
    await _sold(store, [(mug, 3), (cap, 3)])

    monkeypatch.setattr(store.store, "return_sold", died)
    with pytest.raises(ConnectionResetError):
        await store.return_sold("cancel:o-4", [SoldUnits(sku=mug, quantity=3)])
    monkeypatch.undo()
    for key in [k async for k in redis_client.scan_iter(match=f"{store.store.prefix}:*")]:
        await redis_client.delete(key)  # Redis lost this store's data

    other = make()
    assert await _level(other, mug) == (5, 0, 0)  # restored from the ledger: the move counted
    assert await other.return_sold("cancel:o-4", [SoldUnits(sku=mug, quantity=3)]) is False
    assert (await other.reconcile()).moves_applied == []  # the retry marked it
    assert await _level(other, mug) == (5, 0, 0)
    assert await _level(other, cap) == (2, 0, 3)
    assert (await other.reconcile()).clean


async def test_a_move_of_more_than_was_sold_or_of_other_lines_is_refused_whole(
    make: Callable[[], DurableReservations],
) -> None:
    store = make()
    await store.start()
    mug, cap = _sku(), _sku()
    await store.set_stock(mug, 5)
    await store.set_stock(cap, 5)
    await _sold(store, [(mug, 2), (cap, 1)])
    with pytest.raises(StockConflict):
        await store.return_sold(
            "cancel:o-5", [SoldUnits(sku=mug, quantity=1), SoldUnits(sku=cap, quantity=2)]
        )
    assert await store.ledger.move("cancel:o-5") is None
    assert (await _level(store, mug), await _level(store, cap)) == ((3, 0, 2), (4, 0, 1))
    await store.return_sold("cancel:o-5", [SoldUnits(sku=mug, quantity=1)])
    with pytest.raises(InvalidRequest, match="other lines"):
        await store.return_sold("cancel:o-5", [SoldUnits(sku=mug, quantity=2)])
    with pytest.raises(InvalidRequest, match="move id"):
        await store.return_sold("no spaces", [SoldUnits(sku=mug, quantity=1)])
    with pytest.raises(InvalidRequest, match="at least one"):
        await store.return_sold("cancel:o-6", [])
    assert await _level(store, mug) == (4, 0, 1)
    assert (await store.reconcile()).clean
