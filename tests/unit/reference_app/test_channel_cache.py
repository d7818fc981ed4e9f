"""The inventory's channel cache reads the table at most once per ttl, whatever is asked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reference_app.inventory.deps import ChannelCache
from reference_app.inventory.models import SalesChannel
from sqlalchemy import event
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine


async def test_unknown_names_do_not_cost_a_query_each(tmp_path: Path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'channels.sqlite3'}")
    async with engine.begin() as conn:
        await conn.run_sync(SalesChannel.__table__.create)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions() as session, session.begin():
        session.add(
            SalesChannel(name="web", locations=[["berlin", 1]], strategy="priority", split="lines")
        )
    queries: list[str] = []

    def count(*args: Any) -> None:
        queries.append(args[2])

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        cache = ChannelCache(sessions, ttl=60)
        web = await cache.get("web")
        assert web is not None
        assert web.names == ("berlin",)
        assert web.locations[0].safety_stock == 1
        for i in range(50):  # the public product list takes any ?channel=
            assert await cache.get(f"nope-{i}") is None
        assert len(queries) == 1
        await cache.refresh()  # what saving a channel does
        assert len(queries) == 2
    finally:
        await engine.dispose()
