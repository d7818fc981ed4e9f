"""The harness's PostgreSQL is a real PostgreSQL 15 behind SQLAlchemy 2 async (asyncpg)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from commercekit.testing.servers import PostgresServer


@pytest.fixture
async def engine(postgres_server: PostgresServer) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(postgres_server.async_url, pool_size=20, max_overflow=0)
    yield engine
    await engine.dispose()


async def test_server_is_postgres_15(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        version = await conn.scalar(text("SHOW server_version"))
    assert str(version).startswith("15.")


async def test_transactions_commit_and_roll_back(engine: AsyncEngine) -> None:
    table = f"t_{uuid.uuid4().hex[:8]}"
    async with engine.begin() as conn:
        await conn.execute(text(f"CREATE TABLE {table} (id int PRIMARY KEY, name text)"))
        await conn.execute(text(f"INSERT INTO {table} VALUES (1, 'kept')"))

    async def insert_then_fail() -> None:
        async with engine.begin() as conn:
            await conn.execute(text(f"INSERT INTO {table} VALUES (2, 'rolled back')"))
            raise RuntimeError("abort the transaction")

    with pytest.raises(RuntimeError):
        await insert_then_fail()
    async with engine.connect() as conn:
        names = (await conn.execute(text(f"SELECT name FROM {table}"))).scalars().all()
    assert names == ["kept"]


async def test_row_locks_serialise_concurrent_conditional_updates(engine: AsyncEngine) -> None:
    table = f"stock_{uuid.uuid4().hex[:8]}"
    async with engine.begin() as conn:
        await conn.execute(text(f"CREATE TABLE {table} (id int PRIMARY KEY, qty int NOT NULL)"))
        await conn.execute(text(f"INSERT INTO {table} VALUES (1, 10)"))

    async def take_one() -> bool:
        async with engine.begin() as conn:
            result = await conn.execute(
                text(f"UPDATE {table} SET qty = qty - 1 WHERE id = 1 AND qty >= 1")
            )
            return result.rowcount == 1

    taken = await asyncio.gather(*(take_one() for _ in range(60)))
    assert sum(taken) == 10
    async with engine.connect() as conn:
        assert await conn.scalar(text(f"SELECT qty FROM {table}")) == 0


async def test_create_database_gives_an_isolated_database(
    postgres_server: PostgresServer,
) -> None:
    url = postgres_server.create_database("smoke_isolated")
    assert postgres_server.create_database("smoke_isolated") == url  # idempotent
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://"))
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT current_database()")) == "smoke_isolated"
    await engine.dispose()
