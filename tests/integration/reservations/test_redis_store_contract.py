"""The reservation contract on a real Redis 7."""

from __future__ import annotations

import pytest

from commercekit.testing.contracts import KitStoreContract, StoreFactory


class TestRedisStore(KitStoreContract):
    @pytest.fixture
    def make_store(self, make_redis_store: StoreFactory) -> StoreFactory:
        return make_redis_store
