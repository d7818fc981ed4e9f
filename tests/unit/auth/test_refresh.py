"""Refresh-token rotation and reuse detection: the contract on the in-memory and SQLite stores."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from commercekit.auth import (
    InMemoryRefreshTokenStore,
    RefreshTokens,
    RefreshTokenStore,
    SqlRefreshTokenStore,
)
from commercekit.errors import ConfigurationError
from commercekit.sql import migrate
from commercekit.testing import RefreshTokenStoreContract


class TestInMemoryRefreshTokens(RefreshTokenStoreContract):
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


class TestSqliteRefreshTokens(RefreshTokenStoreContract):
    """`SqlRefreshTokenStore` on SQLite (aiosqlite), as the embedded mode runs it."""

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[RefreshTokenStore]:
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'auth.sqlite3'}")
        await migrate(engine)
        yield SqlRefreshTokenStore(engine)
        await engine.dispose()
