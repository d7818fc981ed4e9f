"""The reservation contract on fakeredis with Lua: the embedded backend runs the same scripts."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
from fakeredis import FakeAsyncRedis, FakeServer

from commercekit.reservations import RedisReservationStore, ReservationStore
from commercekit.testing.contracts import KitStoreContract, StoreFactory


class TestFakeRedisStore(KitStoreContract):
    @pytest.fixture
    def make_store(self) -> StoreFactory:
        server = FakeServer()
        prefix = f"t{uuid.uuid4().hex[:8]}"

        @contextlib.asynccontextmanager
        async def open_store() -> AsyncIterator[ReservationStore]:
            client = FakeAsyncRedis(server=server)
            try:
                yield RedisReservationStore(client, prefix=prefix)
            finally:
                await client.aclose()

        return open_store


class TestShardedFakeRedisStore(KitStoreContract):
    """The same contract with SKUs spread over 8 shards: carts span shards."""

    @pytest.fixture
    def make_store(self) -> StoreFactory:
        server = FakeServer()
        prefix = f"t{uuid.uuid4().hex[:8]}"

        @contextlib.asynccontextmanager
        async def open_store() -> AsyncIterator[ReservationStore]:
            client = FakeAsyncRedis(server=server)
            try:
                yield RedisReservationStore(client, prefix=prefix, shards=8)
            finally:
                await client.aclose()

        return open_store
