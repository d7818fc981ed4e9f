from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from commercekit.sql import migrate
from commercekit.testing.servers import PostgresServer


def fresh_database(postgres_server: PostgresServer) -> str:
    """A new, empty database; its SQLAlchemy asyncpg URL."""
    url = postgres_server.create_database(f"events_{uuid.uuid4().hex[:12]}")
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


@pytest.fixture
async def engine(postgres_server: PostgresServer) -> AsyncIterator[AsyncEngine]:
    """An engine on a fresh, migrated database."""
    url = fresh_database(postgres_server)
    await migrate(url)
    engine = create_async_engine(url, pool_size=10, max_overflow=10)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
