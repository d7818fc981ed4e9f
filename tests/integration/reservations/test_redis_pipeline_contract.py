"""The reservation contract on a real Redis 7 with pipelined scripts, and NOSCRIPT under load."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from commercekit.errors import BackendUnavailable, OutOfStock
from commercekit.reservations import RedisReservationStore, ReservationStore
from commercekit.testing.contracts import KitStoreContract, StoreFactory
from commercekit.testing.servers import RedisServer, free_port


@pytest.fixture
def make_pipelined_store(redis_server: RedisServer) -> StoreFactory:
    prefix = f"p{uuid.uuid4().hex[:8]}"

    @contextlib.asynccontextmanager
    async def open_store() -> AsyncIterator[ReservationStore]:
        pool = aioredis.BlockingConnectionPool.from_url(redis_server.url, max_connections=64)
        client = aioredis.Redis.from_pool(pool)
        try:
            yield RedisReservationStore(client, prefix=prefix, pipeline=True)
        finally:
            await client.aclose()

    return open_store


class TestPipelinedRedisStore(KitStoreContract):
    @pytest.fixture
    def make_store(self, make_pipelined_store: StoreFactory) -> StoreFactory:
        return make_pipelined_store


async def test_hot_sku_never_oversells_with_a_pipeline(redis_server: RedisServer) -> None:
    client = aioredis.from_url(redis_server.url)
    store = RedisReservationStore(client, prefix=f"p{uuid.uuid4().hex[:8]}", pipeline=True)
    await store.set_stock("hot", 50)
    granted = 0

    async def buyer() -> None:
        nonlocal granted
        for _ in range(10):
            try:
                await store.reserve([("hot", 1)], ttl=60, owner="u")
                granted += 1
            except OutOfStock:
                return

    await asyncio.gather(*(buyer() for _ in range(64)))
    level = await store.stock("hot")
    assert granted == 50
    assert (level.available, level.held, level.sold) == (0, 50, 0)
    await client.aclose()


async def test_script_flush_during_load_is_recovered(redis_server: RedisServer) -> None:
    client = aioredis.from_url(redis_server.url)
    store = RedisReservationStore(client, prefix=f"p{uuid.uuid4().hex[:8]}", pipeline=True)
    await store.set_stock("sku", 1_000)

    async def buyer() -> int:
        made = 0
        for _ in range(10):
            await store.reserve([("sku", 1)], ttl=60, owner="u")
            made += 1
        return made

    async def flusher() -> None:
        for _ in range(5):
            await client.script_flush()
            await asyncio.sleep(0.002)

    *made, _ = await asyncio.gather(*(buyer() for _ in range(32)), flusher())
    assert sum(made) == 320
    assert (await store.stock("sku")).held == 320
    await client.aclose()


async def test_unreachable_redis_is_backend_unavailable_for_every_caller() -> None:
    client = aioredis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    store = RedisReservationStore(client, prefix="p", pipeline=True)
    store._loaded = True  # skip SCRIPT LOAD: the pipeline itself must report the failure
    results = await asyncio.gather(
        *(store.reserve([("sku", 1)], ttl=60, owner="u") for _ in range(5)),
        return_exceptions=True,
    )
    assert all(isinstance(r, BackendUnavailable) for r in results), results
    await client.aclose()
