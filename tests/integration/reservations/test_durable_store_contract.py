"""The reservation contract on `DurableReservations`: real Redis 7 holds, a PostgreSQL ledger.

This is the store the reference app runs. Each replica the suite opens has
its own Redis connection pool and its own engine on the test's database.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from commercekit.reservations import (
    DurableReservations,
    RedisReservationStore,
    ReservationLedger,
    ReservationStore,
)
from commercekit.testing.contracts import KitStoreContract, StoreFactory
from commercekit.testing.servers import RedisServer


class TestDurableReservations(KitStoreContract):
    @pytest.fixture
    async def make_store(
        self, engine: AsyncEngine, redis_server: RedisServer
    ) -> AsyncIterator[StoreFactory]:
        url = engine.url.render_as_string(hide_password=False)
        prefix = f"d{uuid.uuid4().hex[:8]}"

        @contextlib.asynccontextmanager
        async def open_store() -> AsyncIterator[ReservationStore]:
            pool = aioredis.BlockingConnectionPool.from_url(redis_server.url, max_connections=64)
            client = aioredis.Redis.from_pool(pool)
            replica_engine = create_async_engine(url, pool_size=20, max_overflow=0)
            try:
                store = RedisReservationStore(client, prefix=prefix, guarded=True)
                durable = DurableReservations(store, ReservationLedger(replica_engine))
                await durable.start()
                yield durable
            finally:
                await client.aclose()
                await replica_engine.dispose()

        yield open_store
        # What the test left, Redis and the ledger agree on: nothing to repair.
        async with open_store() as store:
            assert isinstance(store, DurableReservations)
            report = await store.reconcile()
        assert report.clean, report
