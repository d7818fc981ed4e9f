from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from fakeredis import FakeAsyncRedis, FakeServer

from commercekit.errors import InvalidRequest
from commercekit.reservations import RedisReservationStore

from .spread_cases import GRACE, SHARDS, SpreadCartCases


class TestSpreadCartsOnFakeRedis(SpreadCartCases):
    @pytest.fixture
    async def store(self) -> AsyncIterator[RedisReservationStore]:
        client = FakeAsyncRedis()
        yield RedisReservationStore(
            client, prefix=f"t{uuid.uuid4().hex[:6]}", shards=SHARDS, part_grace=GRACE
        )
        await client.aclose()


async def test_an_amendment_must_keep_to_the_reservations_shard() -> None:
    store = RedisReservationStore(FakeAsyncRedis(server=FakeServer()), shards=4)
    here = "AMEND-0"
    there = next(
        f"AMEND-{i}" for i in range(1, 100) if store.shard_of(f"AMEND-{i}") != store.shard_of(here)
    )
    await store.set_stock(here, 5)
    await store.set_stock(there, 5)
    hold = await store.reserve([(here, 1)], ttl=60, owner="u1")
    with pytest.raises(InvalidRequest, match="shard"):
        await store.amend(hold.id, [(here, 1), (there, 1)])
    assert await store.get(hold.id) == hold
    assert (await store.stock(there)).held == 0
    spread = await store.reserve([(here, 1), (there, 1)], ttl=60, owner="u1")
    home = here if store.shard_of(here) == store._shard_of(spread.id) else there
    with pytest.raises(InvalidRequest, match="spread"):
        await store.amend(spread.id, [(home, 2)])
    assert await store.get(spread.id) == spread
