"""Refresh-token families on real PostgreSQL: the contract, hashes only, racing rotations."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from commercekit.auth import RefreshTokens, RefreshTokenStore, SqlRefreshTokenStore
from commercekit.auth.refresh import StoredRefreshToken, hash_refresh_token
from commercekit.errors import InvalidRefreshToken, RefreshTokenReused
from commercekit.sql import migrate
from commercekit.testing import RefreshTokenStoreContract
from commercekit.testing.servers import PostgresServer


@pytest.fixture(scope="module")
def database_url(postgres_server: PostgresServer) -> str:
    url = postgres_server.create_database(f"auth_{uuid.uuid4().hex[:10]}")
    url = url.replace("postgresql://", "postgresql+asyncpg://")
    asyncio.run(migrate(url))
    return url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url, pool_size=20)
    yield engine
    await engine.dispose()


class TestSqlRefreshTokens(RefreshTokenStoreContract):
    @pytest.fixture
    def store(self, engine: AsyncEngine) -> RefreshTokenStore:
        return SqlRefreshTokenStore(engine)


async def test_the_database_holds_no_token_in_clear(engine: AsyncEngine) -> None:
    refresh = RefreshTokens(SqlRefreshTokenStore(engine))
    issued = await refresh.issue("user-clear", role="user")
    rotated = await refresh.rotate(issued.token)
    async with engine.connect() as conn:
        dump = (await conn.execute(text("SELECT * FROM commercekit_refresh_tokens"))).all()
    stored = {str(value) for row in dump for value in row}
    assert hash_refresh_token(issued.token) in stored
    assert hash_refresh_token(rotated.token) in stored
    assert not {issued.token, rotated.token} & stored


async def test_concurrent_rotations_of_one_token_let_one_through(engine: AsyncEngine) -> None:
    """The conditional UPDATE, hit by 16 transactions on 16 connections at once."""
    store = SqlRefreshTokenStore(engine)
    refresh = RefreshTokens(store)
    issued = await refresh.issue("user-race")
    used = hash_refresh_token(issued.token)
    now = dt.datetime.now(dt.UTC)
    successors = [
        StoredRefreshToken(
            token_hash=hash_refresh_token(f"successor-{i}"),
            family_id=issued.family_id,
            created_at=now,
            expires_at=now + dt.timedelta(hours=1),
        )
        for i in range(16)
    ]
    start = asyncio.Event()

    async def rotate(successor: StoredRefreshToken) -> bool:
        await start.wait()
        return await store.rotate(used, successor, now)

    tasks = [asyncio.create_task(rotate(s)) for s in successors]
    await asyncio.sleep(0)
    start.set()
    results = await asyncio.gather(*tasks)
    assert results.count(True) == 1
    async with engine.connect() as conn:
        count = await conn.scalar(
            text("SELECT count(*) FROM commercekit_refresh_tokens WHERE family_id = :f"),
            {"f": issued.family_id},
        )
    assert count == 2  # the first token and exactly one successor


async def test_racing_refreshes_through_the_service_end_the_family(engine: AsyncEngine) -> None:
    """Two clients (or a client and a thief) refresh with one token at the same moment."""
    refresh = RefreshTokens(SqlRefreshTokenStore(engine))
    for attempt in range(5):
        issued = await refresh.issue(f"user-race-{attempt}")
        results = await asyncio.gather(
            refresh.rotate(issued.token), refresh.rotate(issued.token), return_exceptions=True
        )
        winners = [r for r in results if not isinstance(r, BaseException)]
        assert len(winners) == 1, results
        assert any(isinstance(r, RefreshTokenReused) for r in results), results
        with pytest.raises(InvalidRefreshToken):
            await refresh.rotate(winners[0].token)
