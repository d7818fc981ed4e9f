"""`insert_or_ignore` and `upsert` on SQLite (PostgreSQL: the integration tests of their users)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Insert, Integer, MetaData, String, Table, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from commercekit.email import Recipient, SqlRecipients
from commercekit.errors import ConfigurationError
from commercekit.sql import ON_CONFLICT_DIALECTS, insert_or_ignore, migrate, upsert

metadata = MetaData()
counters = Table(
    "counters",
    metadata,
    Column("id", String(20), primary_key=True),
    Column("label", String(20), unique=True),
    Column("n", Integer, nullable=False),
)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'sql.sqlite3'}")
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


async def rows(engine: AsyncEngine) -> list[tuple[str, str, int]]:
    async with engine.connect() as conn:
        found = await conn.execute(select(counters).order_by(counters.c.id))
        return [(row.id, row.label, row.n) for row in found]


async def test_insert_or_ignore_inserts_once_and_says_which_rows_it_inserted(
    engine: AsyncEngine,
) -> None:
    dialect = engine.dialect.name
    async with engine.begin() as conn:
        first = await conn.execute(
            insert_or_ignore(dialect, counters, {"id": "a", "label": "A", "n": 1})
        )
        assert first.rowcount == 1
        again = await conn.execute(
            insert_or_ignore(dialect, counters, {"id": "a", "label": "other", "n": 9})
        )
        assert again.rowcount == 0
        many = insert_or_ignore(
            dialect,
            counters,
            [{"id": "a", "label": "A2", "n": 5}, {"id": "b", "label": "B", "n": 2}],
        )
        inserted = (await conn.execute(many.returning(counters.c.id))).scalars().all()
    assert inserted == ["b"]
    assert await rows(engine) == [("a", "A", 1), ("b", "B", 2)]  # the first "a" kept


async def test_insert_or_ignore_on_an_index_ignores_only_that_index(engine: AsyncEngine) -> None:
    dialect = engine.dialect.name
    async with engine.begin() as conn:
        await conn.execute(insert_or_ignore(dialect, counters, {"id": "a", "label": "A", "n": 1}))
        same_id = insert_or_ignore(
            dialect, counters, {"id": "a", "label": "Z", "n": 2}, index_elements=["id"]
        )
        assert (await conn.execute(same_id)).rowcount == 0
    same_label = insert_or_ignore(
        dialect, counters, {"id": "b", "label": "A", "n": 3}, index_elements=["id"]
    )
    async with engine.begin() as conn:
        with pytest.raises(IntegrityError):  # the label's conflict is not the one ignored
            await conn.execute(same_label)
    assert await rows(engine) == [("a", "A", 1)]


async def test_upsert_inserts_then_updates_with_an_expression(engine: AsyncEngine) -> None:
    dialect = engine.dialect.name

    def bump(row_id: str, by: int) -> Insert:
        return upsert(
            dialect,
            counters,
            {"id": row_id, "label": row_id.upper(), "n": by},
            index_elements=["id"],
            set_={"n": counters.c.n + by},
        )

    async with engine.begin() as conn:
        await conn.execute(bump("a", 1))
        await conn.execute(bump("a", 5))
        await conn.execute(bump("b", 2))
    assert await rows(engine) == [("a", "A", 6), ("b", "B", 2)]


def test_the_postgresql_statements() -> None:
    ignore = insert_or_ignore("postgresql", counters, {"id": "a", "label": "A", "n": 1})
    assert str(ignore.compile(dialect=postgresql.dialect())).endswith("ON CONFLICT DO NOTHING")
    update = upsert(
        "postgresql",
        counters,
        {"id": "a", "label": "A", "n": 1},
        index_elements=["id"],
        set_={"n": counters.c.n + 1},
    )
    sql = str(update.compile(dialect=postgresql.dialect()))
    assert "ON CONFLICT (id) DO UPDATE SET n = (counters.n + %(n_1)s" in sql


@pytest.mark.parametrize("dialect", ["mysql", "oracle", "mssql"])
def test_another_dialect_is_refused(dialect: str) -> None:
    assert dialect not in ON_CONFLICT_DIALECTS
    with pytest.raises(ConfigurationError, match=dialect):
        insert_or_ignore(dialect, counters, {"id": "a", "label": "A", "n": 1})
    with pytest.raises(ConfigurationError, match=dialect):
        upsert(dialect, counters, {"id": "a"}, index_elements=["id"], set_={"n": 1})


async def test_a_remembered_recipient_is_updated_in_place(tmp_path: Path) -> None:
    # One of the helpers' users, on SQLite: the email service's address book.
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'email.sqlite3'}")
    await migrate(engine)
    try:
        recipients = SqlRecipients(engine)
        await recipients.remember(Recipient("u-1", "old@example.com", "Grace"))
        await recipients.remember(Recipient("u-1", "new@example.com", "Grace H."))
        await recipients.remember(Recipient("u-2", "ada@example.com", "Ada"))
        assert await recipients.lookup("u-1") == Recipient("u-1", "new@example.com", "Grace H.")
        assert await recipients.lookup("u-2") == Recipient("u-2", "ada@example.com", "Ada")
    finally:
        await engine.dispose()
