from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from fakeredis import FakeAsyncRedis

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
