from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from commercekit.reservations import RedisReservationStore, ReservationStore
from commercekit.sql import migrate
from commercekit.testing.contracts import StoreFactory
from commercekit.testing.servers import PostgresServer, RedisServer


@pytest.fixture
async def engine(postgres_server: PostgresServer) -> AsyncIterator[AsyncEngine]:
    """An engine on a database of its own, with commercekit's tables."""
    url = postgres_server.create_database(f"ledger_{uuid.uuid4().hex[:10]}")
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://"))
    await migrate(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A client of the session's Redis (tests keep to a key prefix of their own)."""
    client = aioredis.from_url(redis_server.url)
    yield client
    await client.aclose()


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
