"""`replicas=`: a write no replica confirmed is not acknowledged, and a hold it made is undone.

fakeredis has no replicas (and no WAIT), so every write of a store asking
for one is refused: what the master did is then visible, as it would be on
a Redis whose replicas are all down. The real thing (replicas, failovers)
is in tests/integration/reservations/test_redis_failover.py.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from fakeredis import FakeAsyncRedis, FakeServer

from commercekit.errors import InvalidRequest, NotReplicated
from commercekit.reservations import RedisReservationStore
from commercekit.reservations._batch import ReplicatedScriptPipeline, ScriptPipeline


def _stores(shards: int = 1) -> tuple[RedisReservationStore, RedisReservationStore]:
    """A store asking for a replica, and one on the same data that does not."""
    server, prefix = FakeServer(), f"t{uuid.uuid4().hex[:8]}"
    options = {"prefix": prefix, "shards": shards}
    return (
        RedisReservationStore(FakeAsyncRedis(server=server), replicas=1, **options),
        RedisReservationStore(FakeAsyncRedis(server=server), **options),
    )


async def test_every_write_is_refused_with_not_replicated() -> None:
    replicated, plain = _stores()
    with pytest.raises(NotReplicated) as refused:
        await replicated.set_stock("SKU-1", 5)
    assert (refused.value.replicas, refused.value.wanted) == (0, 1)
    hold = await plain.reserve([("SKU-1", 2)], ttl=60, owner="ann")
    with pytest.raises(NotReplicated):
        await replicated.confirm(hold.id)
    with pytest.raises(NotReplicated):
        await replicated.expire_due()
    assert (await replicated.stock("SKU-1")).sold == 2  # reads need no replica


async def test_a_refused_reserve_releases_the_hold_it_made() -> None:
    replicated, plain = _stores()
    await plain.set_stock("SKU-1", 5)
    with pytest.raises(NotReplicated):
        await replicated.reserve([("SKU-1", 2)], ttl=60, owner="ann")
    level = await plain.stock("SKU-1")
    assert (level.available, level.held) == (5, 0)
    assert await plain.pending() == []


async def test_a_refused_restock_or_adjust_is_undone_and_a_refused_set_is_kept() -> None:
    replicated, plain = _stores()
    await plain.set_stock("SKU-1", 5)
    with pytest.raises(NotReplicated):
        await replicated.restock("SKU-1", 3)
    with pytest.raises(NotReplicated):
        await replicated.adjust("SKU-1", -2)
    assert (await plain.stock("SKU-1")).available == 5
    with pytest.raises(NotReplicated):
        await replicated.set_stock("SKU-1", 7)  # made again by a retry: harmless
    assert (await plain.stock("SKU-1")).available == 7


async def test_a_refused_replay_leaves_the_first_calls_hold() -> None:
    replicated, plain = _stores()
    await plain.set_stock("SKU-1", 5)
    hold = await plain.reserve([("SKU-1", 2)], ttl=60, owner="ann", idempotency_key="k")
    with pytest.raises(NotReplicated):
        await replicated.reserve([("SKU-1", 2)], ttl=60, owner="ann", idempotency_key="k")
    assert [r.id for r in await plain.pending()] == [hold.id]


async def test_a_refused_cart_over_shards_leaves_no_part_held() -> None:
    replicated, plain = _stores(shards=16)
    skus = [f"SKU-{i}" for i in range(8)]
    for sku in skus:
        await plain.set_stock(sku, 3)
    assert len({plain._shard_of(sku) for sku in skus}) > 1
    with pytest.raises(NotReplicated):
        await replicated.reserve([(sku, 1) for sku in skus], ttl=60, owner="ann")
    assert await plain.available(skus) == dict.fromkeys(skus, 3)
    assert await plain.pending() == []


def test_without_replicas_the_pipeline_is_the_plain_one() -> None:
    client = FakeAsyncRedis()
    assert RedisReservationStore(client)._pipeline is None
    assert type(RedisReservationStore(client, pipeline=True)._pipeline) is ScriptPipeline
    assert isinstance(RedisReservationStore(client, replicas=1)._pipeline, ReplicatedScriptPipeline)


@pytest.mark.parametrize(
    "options",
    [{"replicas": -1}, {"replicas": 1, "replica_timeout": dt.timedelta(0)}],
)
def test_replica_options_are_checked(options: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest):
        RedisReservationStore(FakeAsyncRedis(), **options)
