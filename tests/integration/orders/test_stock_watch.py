"""`StockWatch`: ``stock.*`` events from the journal through the outbox, exactly once.

On SQLite and a real PostgreSQL, with a real Redis.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from commercekit.errors import InvalidRequest
from commercekit.events import CATALOG, Outbox
from commercekit.events.outbox import OutboxMessage
from commercekit.orders import OrderBook, RestockType
from commercekit.reservations import DurableReservations, StockReason, StockState, acting_as
from commercekit.reservations.journal import move
from commercekit.reservations.ledger import JournalRow, write_journal
from commercekit.reservations.watch import StockWatch
from commercekit.sql import read_snapshot
from tests.integration.orders.conftest import sku


async def events(engine: AsyncEngine, of: str) -> list[tuple[str, dict[str, Any]]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(OutboxMessage.event_type, OutboxMessage.body)
            .where(OutboxMessage.event_type.like("stock.%"))
            .order_by(OutboxMessage.id)
        )
        found = [(kind, json.loads(body)["data"]) for kind, body in rows]
    return [(kind, data) for kind, data in found if data["sku"] == of]


async def test_low_out_back_in_and_adjusted_are_announced_once_each(
    stock: DurableReservations, book: OrderBook, engine: AsyncEngine
) -> None:
    watch = StockWatch(engine, Outbox(), source="inventory")
    mug = sku("MUG")
    await watch.set_threshold(mug, 3)
    assert await watch.threshold(mug) == 3
    with acting_as("admin:1"):
        await stock.set_stock(mug, 10)
    await stock.reserve([(mug, 6)], ttl=60, owner="a")  # 4 left: above the threshold
    await stock.reserve([(mug, 2)], ttl=60, owner="b")  # 2 left: low
    last = await stock.reserve([(mug, 2)], ttl=60, owner="c")  # 0 left: out
    await stock.release(last.id)  # 2 again: back in
    with acting_as("admin:1"):
        await stock.adjust(mug, 5)  # 7
    assert await watch.pending() >= 6
    assert await watch.run_once() >= 6
    assert await watch.run_once() == 0  # nothing twice
    assert await watch.pending() == 0
    seen = await events(engine, mug)
    assert [kind for kind, _ in seen] == [
        "stock.adjusted", "stock.low", "stock.out", "stock.back_in", "stock.adjusted",
    ]  # fmt: skip
    assert seen[0][1] | {"journal_id": 0} == {
        "sku": mug, "location": "default", "available": 10, "on_hand": 10, "journal_id": 0,
        "reason": "set", "change": 10, "actor": "admin:1",
    }  # fmt: skip
    assert (seen[1][1]["available"], seen[1][1]["threshold"]) == (2, 3)
    assert (seen[2][1]["available"], seen[2][1]["on_hand"]) == (0, 10)
    assert seen[4][1]["change"] == 5
    assert seen[4][1]["available"] == 7
    assert (await watch.levels(mug)).available == (await stock.stock(mug)).available == 7
    # Every event decodes with the catalog.
    async with engine.connect() as conn:
        bodies = (await conn.scalars(select(OutboxMessage.body))).all()
    assert all(CATALOG.decode(body.encode()) for body in bodies)


async def test_selling_out_through_an_order_and_a_return_back_in(
    stock: DurableReservations, book: OrderBook, engine: AsyncEngine
) -> None:
    watch = StockWatch(engine, Outbox())
    cup = sku("CUP")
    await stock.set_stock(cup, 2)
    order = await book.open(
        await stock.confirm((await stock.reserve([(cup, 2)], ttl=60, owner="a")).id)
    )
    await book.ship(order.id, "p1", [(cup, 2)])
    await book.receive_return(order.id, "r1", [(cup, 1, RestockType.RESELL)])
    await watch.run_once()
    assert [kind for kind, _ in await events(engine, cup)] == [
        "stock.adjusted", "stock.out", "stock.back_in",
    ]  # fmt: skip


async def test_a_failure_before_the_commit_announces_nothing_and_the_next_run_does(
    stock: DurableReservations, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = Outbox()
    watch = StockWatch(engine, outbox)
    pen = sku("PEN")
    await stock.set_stock(pen, 1)
    await stock.reserve([(pen, 1)], ttl=60, owner="a")
    pending = await watch.pending()

    async def down(*args: object, **kwargs: object) -> None:
        raise ConnectionResetError("the database went away")

    monkeypatch.setattr(outbox, "add", down)
    with pytest.raises(ConnectionResetError):
        await watch.run_once()
    monkeypatch.undo()
    assert await watch.pending() == pending
    assert await events(engine, pen) == []
    assert (await watch.levels(pen)).available == 0  # nothing was seen
    await watch.run_once()
    assert [kind for kind, _ in await events(engine, pen)] == ["stock.adjusted", "stock.out"]


async def test_concurrent_watches_announce_each_row_once(
    stock: DurableReservations, engine: AsyncEngine
) -> None:
    ink = sku("INK")
    await stock.set_stock(ink, 30)
    for n in range(15):
        hold = await stock.reserve([(ink, 2)], ttl=60, owner=f"u{n}")
        if n % 2:
            await stock.release(hold.id)
    watches = [StockWatch(engine, Outbox()) for _ in range(3)]
    while await watches[0].pending():
        await asyncio.gather(*(watch.run_once(limit=4) for watch in watches))
    kinds = [kind for kind, _ in await events(engine, ink)]
    assert kinds[0] == "stock.adjusted"
    assert (await watches[0].levels(ink)).available == (await stock.stock(ink)).available == 14
    assert "stock.out" not in kinds
    assert "stock.back_in" not in kinds  # never out: never back


async def test_bad_thresholds_and_limits_are_refused(engine: AsyncEngine) -> None:
    watch = StockWatch(engine, Outbox())
    with pytest.raises(InvalidRequest):
        await watch.set_threshold("MUG", -1)
    with pytest.raises(InvalidRequest):
        await watch.run_once(limit=0)
    await watch.set_threshold("MUG", 4)
    await watch.set_threshold("MUG", None)
    assert await watch.threshold("MUG") is None


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_row_that_commits_after_a_higher_one_was_announced_is_announced_too(
    stock: DurableReservations, engine: AsyncEngine
) -> None:
    # Ids are taken at insert, not at commit: a slow transaction's row has the
    # lower id and commits last. The watch must not pass it by.
    watch = StockWatch(engine, Outbox())
    tea = sku("TEA")
    async with engine.connect() as reader, engine.connect() as slow:
        await read_snapshot(reader)  # a long read (an audit, a backup) holds nothing back
        await reader.scalar(select(func.count()).select_from(JournalRow))
        transaction = await slow.begin()
        await write_journal(
            slow, [move(tea, "default", 5, (None, StockState.AVAILABLE), StockReason.SET)]
        )
        await stock.set_stock(tea, 5)  # a row with a higher id, committed now
        await stock.reserve([(tea, 5)], ttl=60, owner="a")
        await watch.run_once()
        assert await events(engine, tea) == []  # held back behind the open transaction
        await transaction.commit()
        assert await watch.run_once() == 3
        assert await watch.run_once() == 0
    assert [kind for kind, _ in await events(engine, tea)] == ["stock.adjusted"] * 2
    assert (await watch.levels(tea)).available == 5  # the slow row's 5 units, and 5 - 5


async def test_the_watch_writes_nothing_to_the_journal(
    stock: DurableReservations, engine: AsyncEngine
) -> None:
    watch = StockWatch(engine, Outbox())
    jam = sku("JAM")
    await stock.set_stock(jam, 3)
    await stock.reserve([(jam, 1)], ttl=60, owner="a")
    async with engine.connect() as conn:
        before = (await conn.execute(select(JournalRow).order_by(JournalRow.id))).all()
        await conn.rollback()
    assert await watch.run_once() >= 2
    async with engine.connect() as conn:
        after = (await conn.execute(select(JournalRow).order_by(JournalRow.id))).all()
    assert after == before
    assert await watch.pending() == 0
