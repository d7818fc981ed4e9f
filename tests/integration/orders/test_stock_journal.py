"""The stock journal: one row per change, in the ledger's transaction, summing to the levels.

On SQLite and a real PostgreSQL, with a real Redis.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine

from commercekit.errors import InvalidRequest
from commercekit.orders import OrderBook, RestockType
from commercekit.reservations import (
    Channel,
    DurableReservations,
    JournalRow,
    SoldUnits,
    StockQuantities,
    StockReason,
    acting_as,
)
from tests.integration.orders.conftest import sku


def route(entry: object) -> tuple[str | None, str | None, int]:
    source, target = entry.source, entry.target  # type: ignore[attr-defined]
    return (
        None if source is None else source.value,
        None if target is None else target.value,
        entry.quantity,  # type: ignore[attr-defined]
    )


async def test_every_change_is_one_row_with_its_reason_reference_and_actor(
    stock: DurableReservations, book: OrderBook
) -> None:
    mug = sku("MUG")
    with acting_as("admin:7"):
        await stock.set_stock(mug, 10)
        await stock.restock(mug, 5)
        await stock.adjust(mug, -2)
    hold = await stock.reserve([(mug, 3)], ttl=60, owner="alice")
    await stock.amend(hold.id, [(mug, 4)])
    await stock.release(hold.id)
    paid = await stock.reserve([(mug, 3)], ttl=60, owner="bob")
    order = await book.open(await stock.confirm(paid.id))
    await book.ship(order.id, "parcel-1", [(mug, 1)])
    await book.cancel(order.id, "cancel-1", [(mug, 1)])
    await book.receive_return(order.id, "return-1", [(mug, 1, RestockType.DAMAGED)])

    rows = await stock.journal(sku=mug)
    assert [(r.reason, route(r)) for r in rows] == [
        (StockReason.SET, (None, "available", 10)),
        (StockReason.RESTOCK, (None, "available", 5)),
        (StockReason.ADJUST, ("available", None, 2)),
        (StockReason.RESERVE, ("available", "held", 3)),
        (StockReason.AMEND, ("available", "held", 1)),
        (StockReason.RELEASE, ("held", "available", 4)),
        (StockReason.RESERVE, ("available", "held", 3)),
        (StockReason.CONFIRM, ("held", "committed", 3)),
        (StockReason.SHIP, ("committed", "shipped", 1)),
        (StockReason.CANCEL, ("committed", "available", 1)),
        (StockReason.RETURN, ("shipped", "damaged", 1)),
    ]
    assert [r.actor for r in rows[:3]] == ["admin:7"] * 3
    assert {r.actor for r in rows[3:6]} == {"alice"}
    assert [r.reference for r in rows[6:]] == [
        paid.id, paid.id, "parcel-1", "cancel-1", "return-1"
    ]  # fmt: skip
    assert {r.order_id for r in rows[7:]} == {order.id}
    assert all(r.location == "default" for r in rows)
    # Each row starts where the one before ended.
    for earlier, later in itertools.pairwise(rows):
        assert later.before == earlier.after
    assert rows[0].before == StockQuantities()
    last = rows[-1].after
    assert last == StockQuantities(available=11, committed=1, damaged=1)
    level = await stock.stock(mug)
    assert (last.available, last.held, last.sold) == (level.available, level.held, level.sold)
    assert last.on_hand == 12
    assert last.added == 13
    assert last.committed == await book.committed(mug)
    assert last.damaged == await book.damaged(mug)
    assert await stock.ledger.journal_drift() == {}

    # Queries: by order, by reference, by reason, a page after a cursor.
    assert len(await stock.journal(order_id=order.id)) == 4
    assert [r.reason for r in await stock.journal(reference="return-1")] == [StockReason.RETURN]
    shipped = await stock.journal(reason=StockReason.SHIP, sku=mug)
    assert shipped[0].after.shipped == 1
    assert shipped[0].before.shipped == 0
    page = await stock.journal(sku=mug, after=rows[4].id, limit=2)
    assert [r.id for r in page] == [rows[5].id, rows[6].id]
    assert page[0].before == rows[5].before  # the levels sum the rows before the page too


async def test_returns_journal_resold_damaged_and_written_off_units(
    stock: DurableReservations, book: OrderBook
) -> None:
    cup = sku("CUP")
    await stock.set_stock(cup, 5)
    order = await book.open(
        await stock.confirm((await stock.reserve([(cup, 5)], ttl=60, owner="alice")).id)
    )
    await book.ship(order.id, "p1", [(cup, 5)])
    await book.receive_return(
        order.id,
        "r1",
        [
            (cup, 2, RestockType.RESELL),
            (cup, 1, RestockType.DAMAGED),
            (cup, 1, RestockType.NONE),
        ],
    )
    # The same return again writes nothing more.
    await book.receive_return(
        order.id,
        "r1",
        [
            (cup, 2, RestockType.RESELL),
            (cup, 1, RestockType.DAMAGED),
            (cup, 1, RestockType.NONE),
        ],
    )
    rows = await stock.journal(reference="r1")
    assert sorted(route(r) for r in rows) == [
        ("shipped", "available", 2),
        ("shipped", "damaged", 1),
        ("shipped", "written_off", 1),
    ]
    level = (await stock.ledger.journal_levels())[cup, "default"]
    assert level == StockQuantities(available=2, shipped=1, damaged=1, written_off=1)
    # stock added == on hand + shipped + damaged + written off
    added, sold = await stock.ledger.totals_of(cup)
    assert added == level.on_hand + level.shipped + level.damaged + level.written_off == 5
    assert sold == level.sold == 3
    assert await stock.ledger.journal_drift() == {}


async def test_concurrent_changes_sum_to_the_ledger_and_to_redis(
    stock: DurableReservations, book: OrderBook
) -> None:
    hat = sku("HAT")
    await stock.set_stock(hat, 40)

    async def shopper(n: int) -> None:
        hold = await stock.reserve([(hat, 1 + n % 3)], ttl=60, owner=f"u{n}")
        if n % 3 == 0:
            await stock.release(hold.id)
        elif n % 3 == 1:
            order = await book.open(await stock.confirm(hold.id))
            await book.ship(order.id, f"s-{order.id}", [(hat, 1)])

    async def clerk(n: int) -> None:
        with acting_as("clerk"):
            await stock.restock(hat, 1)
            if n % 2:
                await stock.adjust(hat, -1)

    await asyncio.gather(*(shopper(n) for n in range(18)), *(clerk(n) for n in range(6)))
    assert await stock.ledger.journal_drift() == {}
    level = (await stock.ledger.journal_levels())[hat, "default"]
    redis_level = await stock.stock(hat)
    assert (level.available, level.held, level.sold) == (
        redis_level.available,
        redis_level.held,
        redis_level.sold,
    )
    assert level.shipped == 6
    assert level.committed + level.shipped == redis_level.sold
    assert level.added == 40 + 6 - 3
    assert (await stock.reconcile()).clean


async def test_reconcile_journals_the_holds_it_records_and_repairs_a_gap(
    stock: DurableReservations, engine: AsyncEngine
) -> None:
    pen = sku("PEN")
    await stock.set_stock(pen, 5)
    # A hold Redis made whose ledger write never happened (a crash in between).
    lost = await stock.store.reserve([(pen, 2)], ttl=60, owner="carol")
    report = await stock.reconcile()
    assert report.records_added == [lost.id]
    assert report.journal_repaired == {}
    rows = await stock.journal(reference=lost.id)
    assert [(r.reason, route(r)) for r in rows] == [
        (StockReason.RECONCILE, ("available", "held", 2))
    ]
    # A journal row lost (here deleted by hand): reconcile finds the gap and closes it.
    async with engine.begin() as conn:
        await conn.execute(delete(JournalRow).where(JournalRow.reference == lost.id))
    assert await stock.ledger.journal_drift() == {(pen, "default"): {"held": 2}}
    report = await stock.reconcile()
    assert report.journal_repaired == {pen: {"held": 2}}
    assert await stock.ledger.journal_drift() == {}
    assert (await stock.reconcile()).clean


async def test_a_transition_the_ledger_missed_is_journaled_by_reconcile(
    stock: DurableReservations,
) -> None:
    ink = sku("INK")
    await stock.set_stock(ink, 4)
    hold = await stock.reserve([(ink, 3)], ttl=60, owner="dan")
    await stock.store.confirm(hold.id)  # Redis confirmed; the ledger write was lost
    report = await stock.reconcile()
    assert report.transitions_recorded == [hold.id]
    rows = await stock.journal(reference=hold.id)
    assert [(r.reason, route(r)) for r in rows] == [
        (StockReason.RESERVE, ("available", "held", 3)),
        (StockReason.RECONCILE, ("held", "committed", 3)),
    ]
    assert await stock.ledger.journal_drift() == {}


async def test_a_bad_query_is_refused(stock: DurableReservations) -> None:
    with pytest.raises(InvalidRequest):
        await stock.journal(limit=0)
    with pytest.raises(InvalidRequest):
        await stock.journal(after=-1)


async def test_batched_holds_are_journaled_in_their_batch_statement(
    stock: DurableReservations,
) -> None:
    batched = DurableReservations(stock.store, stock.ledger, batch_records=True)
    await batched.start()
    cap = sku("CAP")
    await batched.set_stock(cap, 30)
    holds = await asyncio.gather(
        *(batched.reserve([(cap, 2)], ttl=60, owner=f"u{n}") for n in range(12))
    )
    # A kit-free cart of two SKUs: one row per SKU held.
    bag = sku("BAG")
    await batched.set_stock(bag, 5)
    both = await batched.reserve([(cap, 1), (bag, 2)], ttl=60, owner="eve")
    rows = await batched.journal(reason=StockReason.RESERVE, sku=cap)
    assert sorted(r.reference for r in rows) == sorted([h.id for h in holds] + [both.id])
    assert {r.actor for r in rows if r.reference == both.id} == {"eve"}
    assert [route(r) for r in await batched.journal(reference=both.id, sku=bag)] == [
        ("available", "held", 2)
    ]
    assert rows[-1].after.held == 25
    assert rows[-1].after.available == 5
    assert await batched.ledger.journal_drift() == {}


async def test_a_return_resold_at_another_location_moves_its_units_there(
    stock: DurableReservations, book: OrderBook
) -> None:
    mug = sku("MUG")
    await stock.set_stock(mug, 3)
    order = await book.open(
        await stock.confirm((await stock.reserve([(mug, 3)], ttl=60, owner="alice")).id)
    )
    await book.ship(order.id, "p1", [(mug, 3)])
    lines = [(mug, 2, RestockType.RESELL, None, "east"), (mug, 1, RestockType.DAMAGED)]
    made = await book.receive_return(order.id, "r-east", lines)
    again = await book.receive_return(order.id, "r-east", lines)  # a retry: moved once
    assert again == made
    assert [(ln.restock, ln.restock_at) for ln in made.lines] == [
        (RestockType.DAMAGED, None),
        (RestockType.RESELL, "east"),
    ]
    home, east = await stock.stock(mug), await stock.stock(mug, location="east")
    assert (home.available, home.held, home.sold) == (0, 0, 1)  # the damaged one
    assert (east.available, east.held, east.sold) == (2, 0, 0)
    assert await stock.ledger.totals_of(mug) == (1, 1)
    assert await stock.ledger.totals_of(mug, location="east") == (2, 0)
    rows = await stock.journal(reference="r-east")
    assert sorted(((r.location, *route(r)) for r in rows), key=str) == [
        ("default", "shipped", "damaged", 1),
        ("default", "shipped", None, 2),
        ("east", None, "available", 2),
    ]
    assert await stock.ledger.journal_drift() == {}
    assert (await stock.reconcile()).clean
    # And it sells there.
    sold_there = await stock.reserve(
        [(mug, 2)], ttl=60, owner="bob", channel=Channel(name="web", locations=("east",))
    )
    assert [(a.location, a.quantity) for a in sold_there.allocations] == [("east", 2)]


async def test_a_stock_change_waits_for_a_recorded_move_to_another_location(
    stock: DurableReservations, engine: AsyncEngine
) -> None:
    cup = sku("CUP")
    await stock.set_stock(cup, 2)
    hold = await stock.confirm((await stock.reserve([(cup, 2)], ttl=60, owner="a")).id)
    assert hold.status.value == "CONFIRMED"
    back = [SoldUnits(sku=cup, quantity=2, restock_at="east")]
    async with engine.begin() as conn:  # recorded; Redis has not made it (a crash, a delay)
        await stock.return_sold_in(conn, "move-east", back, reason=StockReason.RETURN)
    await stock.restock(cup, 1, location="east")  # makes the move first, then restocks
    east = await stock.stock(cup, location="east")
    assert (east.available, east.sold) == (3, 0)
    assert await stock.ledger.totals_of(cup, location="east") == (3, 0)
    assert await stock.ledger.totals_of(cup) == (0, 0)
    assert (await stock.reconcile()).clean


async def test_the_drift_check_during_changes_reads_one_snapshot(
    stock: DurableReservations, book: OrderBook
) -> None:
    hat = sku("HAT")
    await stock.set_stock(hat, 200)
    done = asyncio.Event()

    async def customers() -> None:
        try:
            for n in range(40):
                hold = await stock.reserve([(hat, 2)], ttl=60, owner="u")
                order = await book.open(await stock.confirm(hold.id))
                await book.ship(order.id, f"s-{n}", [(hat, 1)])
        finally:
            done.set()

    async def checker() -> list[dict[tuple[str, str], dict[str, int]]]:
        found = []
        while not done.is_set():
            found.append(await stock.ledger.journal_drift())
        return found

    _, drifts = await asyncio.gather(customers(), checker())
    assert len(drifts) > 1
    assert [d for d in drifts if d] == []  # a torn read would show the changes in flight
