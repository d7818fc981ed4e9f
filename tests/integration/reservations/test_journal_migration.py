"""Migrations ``reservations_0005`` and ``orders_0004``: the journal opens at the levels;
``reservations_0006``: the watch keeps a position in it, and misses no row.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from commercekit.events import Outbox
from commercekit.reservations import (
    ReservationLedger,
    StockQuantities,
    StockReason,
    StockState,
    StockWatch,
)
from commercekit.reservations.journal import move
from commercekit.reservations.ledger import write_journal
from commercekit.sql import alembic_config

AVAILABLE = StockState.AVAILABLE

BEFORE = [
    "INSERT INTO commercekit_stock (sku, location, added, sold, backorder, purchase_limit,"
    " limit_window_ms, updated_at) VALUES"
    " ('MUG', 'default', 10, 4, 0, 0, 0, '2026-12-01 10:00:00'),"
    " ('CUP', 'east', 3, 0, 0, 0, 0, '2026-12-01 10:00:00')",
    "INSERT INTO commercekit_reservations (id, owner, status, lines, allocations, created_at,"
    " updated_at, expires_at) VALUES"
    " ('r-1', 'u-1', 'PENDING', '[[\"MUG\", 2]]', NULL, '2026-12-01 10:00:00',"
    "  '2026-12-01 10:00:00', '2030-01-01 00:00:00'),"
    " ('r-2', 'u-2', 'PENDING', '[[\"CUP\", 1]]', '[[\"CUP\", \"east\", 1]]',"
    "  '2026-12-01 10:00:00', '2026-12-01 10:00:00', '2030-01-01 00:00:00'),"
    " ('r-3', 'u-3', 'CONFIRMED', '[[\"MUG\", 4]]', NULL, '2026-12-01 10:00:00',"
    "  '2026-12-01 10:00:00', '2030-01-01 00:00:00')",
    "INSERT INTO commercekit_orders (id, owner, status, version, created_at, updated_at)"
    " VALUES ('r-3', 'u-3', 'PARTIALLY_FULFILLED', 4, '2026-12-01 10:00:00',"
    " '2026-12-01 10:00:00')",
    # 4 sold: 3 shipped, of which 1 came back damaged; 1 still committed.
    "INSERT INTO commercekit_order_lines (order_id, sku, location, quantity, shipped,"
    " cancelled, returned, damaged, resold, refunded) VALUES"
    " ('r-3', 'MUG', 'default', 4, 3, 0, 1, 1, 0, 0)",
]


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url)
    yield engine
    await engine.dispose()


def _upgrade(connection: Connection, revision: str) -> None:
    command.upgrade(alembic_config(connection), revision)


async def test_the_journal_opens_with_the_levels_the_ledger_and_the_orders_had(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, "orders_0003")
        for statement in BEFORE:
            await conn.execute(text(statement))
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, "heads")
    ledger = ReservationLedger(engine)
    assert await ledger.journal_levels() == {
        ("MUG", "default"): StockQuantities(available=4, held=2, committed=1, shipped=2, damaged=1),
        ("CUP", "east"): StockQuantities(available=2, held=1),
    }
    assert await ledger.journal_drift() == {}
    rows = await ledger.journal()
    assert {r.reason for r in rows} == {StockReason.OPENING}
    assert rows[-1].after == (await ledger.journal_levels())[rows[-1].sku, rows[-1].location]


JOURNAL = [
    "INSERT INTO commercekit_stock_journal (at, sku, location, reason, quantity, source,"
    " target, announced) VALUES"
    " ('2026-12-01 10:00:00', 'MUG', 'default', 'set', 10, NULL, 'available', true),"
    # 2 committed after 3 was announced: below the highest id announced, not announced.
    " ('2026-12-01 10:00:00', 'MUG', 'default', 'reserve', 2, 'available', 'held', false),"
    " ('2026-12-01 10:00:00', 'MUG', 'default', 'reserve', 1, 'available', 'held', true),"
    " ('2026-12-01 10:00:00', 'MUG', 'default', 'reserve', 3, 'available', 'held', false)",
    "INSERT INTO commercekit_stock_watch (sku, location, low, available, held, committed,"
    " shipped, damaged, written_off, out) VALUES ('MUG', 'default', NULL, 9, 1, 0, 0, 0, 0,"
    " false)",
]


async def test_the_watch_announces_what_it_had_not_and_nothing_again(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, "reservations_0005")
        for statement in JOURNAL:
            await conn.execute(text(statement))
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, "heads")
    watch = StockWatch(engine, Outbox())
    assert await watch.pending() == 2
    assert await watch.run_once() == 2
    assert await watch.levels("MUG") == StockQuantities(available=4, held=6)
    async with engine.begin() as conn:  # a row written after the migration
        await write_journal(conn, [move("MUG", "default", 2, (None, AVAILABLE), StockReason.SET)])
    assert await watch.run_once() == 1
    assert await watch.levels("MUG") == StockQuantities(available=6, held=6)
    async with engine.begin() as conn:  # and back: every row announced
        await conn.run_sync(_downgrade, "reservations_0005")
        flags = await conn.execute(text("SELECT announced FROM commercekit_stock_journal"))
        assert [bool(flag) for (flag,) in flags] == [True] * 5


def _downgrade(connection: Connection, revision: str) -> None:
    command.downgrade(alembic_config(connection), revision)
