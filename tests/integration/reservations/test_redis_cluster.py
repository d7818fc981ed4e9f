"""The reservation contract on a real 3-master Redis Cluster."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio.cluster import RedisCluster

from commercekit.reservations import RedisReservationStore, ReservationStore
from commercekit.testing.contracts import KitStoreContract, StoreFactory
from commercekit.testing.servers import RedisClusterServer
from tests.unit.reservations.spread_cases import GRACE, SHARDS, SpreadCartCases


async def test_the_cluster_is_real_and_spreads_slots_over_three_masters(
    redis_cluster: RedisClusterServer,
) -> None:
    client = RedisCluster.from_url(redis_cluster.url)
    try:
        await client.initialize()
        primaries = client.get_primaries()
        assert len(primaries) == 3
        owners = {client.get_node_from_key(f"key-{i}").name for i in range(50)}
        assert len(owners) == 3
        info = await client.cluster_info()
        assert info["cluster_state"] == "ok"
    finally:
        await client.aclose()


def _factory(cluster: RedisClusterServer, shards: int) -> StoreFactory:
    prefix = f"c{uuid.uuid4().hex[:8]}"

    @contextlib.asynccontextmanager
    async def open_store() -> AsyncIterator[ReservationStore]:
        client = RedisCluster.from_url(cluster.url, max_connections=64)
        try:
            yield RedisReservationStore(client, prefix=prefix, shards=shards)
        finally:
            await client.aclose()

    return open_store


class TestRedisClusterStore(KitStoreContract):
    """One shard: every key of the store in one slot, every cart one script."""

    @pytest.fixture
    def make_store(self, redis_cluster: RedisClusterServer) -> StoreFactory:
        return _factory(redis_cluster, shards=1)


class TestShardedRedisClusterStore(KitStoreContract):
    """16 shards over 3 masters: carts span slots and are held part by part."""

    @pytest.fixture
    def make_store(self, redis_cluster: RedisClusterServer) -> StoreFactory:
        return _factory(redis_cluster, shards=16)


async def test_sixteen_shards_spread_over_every_master(redis_cluster: RedisClusterServer) -> None:
    client = RedisCluster.from_url(redis_cluster.url)
    try:
        await client.initialize()
        store = RedisReservationStore(client, shards=16)
        masters = {client.get_node_from_key(store._due(shard)).name for shard in range(16)}
        assert len(masters) == 3
    finally:
        await client.aclose()


class TestSpreadCartsOnRedisCluster(SpreadCartCases):
    @pytest.fixture
    async def store(
        self, redis_cluster: RedisClusterServer
    ) -> AsyncIterator[RedisReservationStore]:
        client = RedisCluster.from_url(redis_cluster.url, max_connections=64)
        yield RedisReservationStore(
            client, prefix=f"c{uuid.uuid4().hex[:6]}", shards=SHARDS, part_grace=GRACE
        )
        await client.aclose()
