"""Refresh-token rotation and reuse detection on the in-memory store."""

from __future__ import annotations

import datetime as dt

import pytest

from commercekit.auth import InMemoryRefreshTokenStore, RefreshTokens, RefreshTokenStore
from commercekit.errors import ConfigurationError
from tests.unit.auth.refresh_contract import RefreshTokenContract


class TestInMemoryRefreshTokens(RefreshTokenContract):
    @pytest.fixture
    def store(self) -> RefreshTokenStore:
        return InMemoryRefreshTokenStore()


def test_the_in_memory_store_is_a_refresh_token_store() -> None:
    assert isinstance(InMemoryRefreshTokenStore(), RefreshTokenStore)


def test_lifetimes_must_make_sense() -> None:
    store = InMemoryRefreshTokenStore()
    with pytest.raises(ConfigurationError):
        RefreshTokens(store, ttl=dt.timedelta(0))
    with pytest.raises(ConfigurationError):
        RefreshTokens(store, ttl=dt.timedelta(days=2), max_lifetime=dt.timedelta(days=1))
