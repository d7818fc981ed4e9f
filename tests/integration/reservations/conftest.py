from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from commercekit.reservations import RedisReservationStore, ReservationStore
from commercekit.testing.contracts import StoreFactory
from commercekit.testing.servers import RedisServer


@pytest.fixture
def make_redis_store(redis_server: RedisServer) -> StoreFactory:
    """Stores on the real Redis, each with its own connection pool, one namespace per test."""
    prefix = f"t{uuid.uuid4().hex[:8]}"

    @contextlib.asynccontextmanager
    async def open_store() -> AsyncIterator[ReservationStore]:
        pool = aioredis.BlockingConnectionPool.from_url(redis_server.url, max_connections=64)
        client = aioredis.Redis.from_pool(pool)
        try:
            yield RedisReservationStore(client, prefix=prefix)
        finally:
            await client.aclose()

    return open_store
