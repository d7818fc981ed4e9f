"""The reservation contract on a real Redis 7."""

from __future__ import annotations

import pytest

from commercekit.testing.contracts import ReservationStoreContract, StoreFactory


class TestRedisStore(ReservationStoreContract):
    @pytest.fixture
    def make_store(self, make_redis_store: StoreFactory) -> StoreFactory:
        return make_redis_store
