"""The reservation contract on a real 3-master Redis Cluster."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio.cluster import RedisCluster

from commercekit.reservations import RedisReservationStore, ReservationStore
from commercekit.testing.contracts import ReservationStoreContract, StoreFactory
from commercekit.testing.servers import RedisClusterServer


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


class TestRedisClusterStore(ReservationStoreContract):
    @pytest.fixture
    def make_store(self, redis_cluster: RedisClusterServer) -> StoreFactory:
        prefix = f"c{uuid.uuid4().hex[:8]}"

        @contextlib.asynccontextmanager
        async def open_store() -> AsyncIterator[ReservationStore]:
            client = RedisCluster.from_url(redis_cluster.url, max_connections=64)
            try:
                yield RedisReservationStore(client, prefix=prefix)
            finally:
                await client.aclose()

        return open_store
