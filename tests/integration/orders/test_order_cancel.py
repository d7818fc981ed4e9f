"""Cancelling orders on real Redis, with the ledger on SQLite and PostgreSQL: units back once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from commercekit.errors import (
    CancellationConflict,
    ConfigurationError,
    InvalidRequest,
    OverCancellation,
    OverFulfilment,
    OverShipped,
)
from commercekit.events import CATALOG, Outbox
from commercekit.events.outbox import OutboxMessage
from commercekit.orders import CancellationLine, OrderBook, OrderStatus, move_id
from commercekit.reservations import (
    DurableReservations,
)

from .conftest import levels, paid, sku


async def died(*args: object) -> bool:
    """A stand-in for a call the process dies in."""
    raise ConnectionResetError("the process died here")


async def test_cancelling_what_did_not_ship_puts_it_back_on_sale(
    book: OrderBook, stock: DurableReservations
) -> None:
    mug, tea = sku("MUG"), sku("TEA")
    order = await paid(stock, book, (mug, 3), (tea, 1))
    await book.ship(order.id, "parcel-1", [(mug, 1)])
    cancelled = await book.cancel(order.id, "ticket-1")
    assert cancelled.lines == (
        CancellationLine(sku=mug, location="default", quantity=2),
        CancellationLine(sku=tea, location="default", quantity=1),
    )
    assert await levels(stock, mug) == (2, 0, 1)  # the shipped one stays sold
    assert await levels(stock, tea) == (1, 0, 0)
    after = await book.get(order.id)
    assert after.status is OrderStatus.FULFILLED  # nothing left to ship
    assert [(ln.shipped, ln.cancelled, ln.committed) for ln in after.lines] == [
        (1, 2, 0),
        (0, 1, 0),
    ]
    assert await book.committed(mug) == 0
    assert (await stock.reconcile()).clean


async def test_a_part_cancelled_leaves_the_order_open_and_all_of_it_cancels_it(
    book: OrderBook, stock: DurableReservations
) -> None:
    mug = sku("MUG")
    order = await paid(stock, book, (mug, 3))
    await book.cancel(order.id, "ticket-2", [(mug, 1)])
    assert (await book.get(order.id)).status is OrderStatus.OPEN
    assert await levels(stock, mug) == (1, 0, 2)
    await book.cancel(order.id, "ticket-3")
    assert (await book.get(order.id)).status is OrderStatus.CANCELLED
    assert await levels(stock, mug) == (3, 0, 0)
    with pytest.raises(OverCancellation, match="no unit left"):
        await book.cancel(order.id, "ticket-4")
    with pytest.raises(OverFulfilment):
        await book.ship(order.id, "parcel-2", [(mug, 1)])


async def test_a_cancellation_is_made_once_per_id_and_an_id_serves_one_cancellation(
    book: OrderBook, stock: DurableReservations
) -> None:
    mug = sku("MUG")
    order = await paid(stock, book, (mug, 4))
    other = await paid(stock, book, (sku("CAP"), 1))
    first = await book.cancel(order.id, "ticket-5", [(mug, 2)])
    assert await book.cancel(order.id, "ticket-5", [(mug, 2)]) == first
    assert await book.cancel(order.id, "ticket-5") == first  # the same id, whatever it covered
    assert await levels(stock, mug) == (2, 0, 2)
    with pytest.raises(CancellationConflict):
        await book.cancel(order.id, "ticket-5", [(mug, 1)])
    with pytest.raises(CancellationConflict):
        await book.cancel(other.id, "ticket-5")
    assert await book.cancellation("ticket-5") == first
    assert await book.cancellation("ticket-6") is None


async def test_more_than_the_order_commits_is_refused_and_nothing_is_cancelled(
    book: OrderBook, stock: DurableReservations
) -> None:
    mug, tea = sku("MUG"), sku("TEA")
    order = await paid(stock, book, (mug, 2), (tea, 1))
    with pytest.raises(OverCancellation) as refused:
        await book.cancel(order.id, "ticket-7", [(mug, 1), (tea, 2)])
    assert refused.value.over == (OverShipped(tea, "default", committed=1, requested=2),)
    assert await book.get(order.id) == order
    assert await book.cancellation("ticket-7") is None
    assert await stock.ledger.move(move_id("ticket-7")) is None
    assert await levels(stock, mug) == (0, 0, 2)
    for bad in ([], [(mug, 0)], [("bad sku", 1)], [(mug, 1, "no place!")]):
        with pytest.raises(InvalidRequest):
            await book.cancel(order.id, "ticket-8", bad)
    with pytest.raises(InvalidRequest):
        await book.cancel(order.id, "not a valid id")


async def test_concurrent_shipments_and_cancellations_never_take_more_than_the_order_holds(
    book: OrderBook, stock: DurableReservations
) -> None:
    mug = sku("MUG")
    order = await paid(stock, book, (mug, 10))

    async def ship(n: int) -> str:
        try:
            await book.ship(order.id, f"parcel-{n}", [(mug, 1)])
        except OverFulfilment:
            return "refused"
        return "shipped"

    async def cancel(n: int) -> str:
        try:
            await book.cancel(order.id, f"ticket-{n}", [(mug, 1)])
        except OverCancellation:
            return "refused"
        return "cancelled"

    outcomes = await asyncio.gather(*(f(n) for n in range(10) for f in (ship, cancel)))
    after = await book.get(order.id)
    (line,) = after.lines
    assert (line.shipped, line.cancelled) == (
        outcomes.count("shipped"),
        outcomes.count("cancelled"),
    )
    assert line.shipped + line.cancelled == 10
    assert outcomes.count("refused") == 10
    assert await levels(stock, mug) == (line.cancelled, 0, 10 - line.cancelled)
    assert (await stock.reconcile()).clean


async def test_a_crash_after_the_commit_leaves_units_unsellable_until_the_retry(
    book: OrderBook, stock: DurableReservations, monkeypatch: pytest.MonkeyPatch
) -> None:
    mug = sku("MUG")
    order = await paid(stock, book, (mug, 3))

    monkeypatch.setattr(stock.store, "return_sold", died)
    with pytest.raises(ConnectionResetError):
        await book.cancel(order.id, "ticket-9")
    monkeypatch.undo()
    assert (await book.get(order.id)).status is OrderStatus.CANCELLED  # committed
    assert await levels(stock, mug) == (0, 0, 3)  # not sellable yet, and never twice
    again = await book.cancel(order.id, "ticket-9")  # the caller's retry finishes it
    assert await levels(stock, mug) == (3, 0, 0)
    assert await book.cancel(order.id, "ticket-9") == again
    assert await levels(stock, mug) == (3, 0, 0)
    assert (await stock.reconcile()).clean


async def test_without_the_retry_the_next_reconcile_puts_the_units_back(
    book: OrderBook, stock: DurableReservations, monkeypatch: pytest.MonkeyPatch
) -> None:
    mug = sku("MUG")
    order = await paid(stock, book, (mug, 2))

    monkeypatch.setattr(stock.store, "return_sold", died)
    with pytest.raises(ConnectionResetError):
        await book.cancel(order.id, "ticket-10", [(mug, 1)])
    monkeypatch.undo()
    assert (await stock.reconcile()).moves_applied == [move_id("ticket-10")]
    assert await levels(stock, mug) == (1, 0, 1)
    assert (await stock.reconcile()).clean


async def test_a_failure_before_the_commit_cancels_nothing(
    book: OrderBook, stock: DurableReservations, monkeypatch: pytest.MonkeyPatch
) -> None:
    mug = sku("MUG")
    order = await paid(stock, book, (mug, 2))

    async def refuse(*args: object, **kwargs: object) -> bool:
        raise ConnectionResetError("the database went away")

    monkeypatch.setattr(stock, "return_sold_in", refuse)
    with pytest.raises(ConnectionResetError):
        await book.cancel(order.id, "ticket-11")
    monkeypatch.undo()
    assert await book.get(order.id) == order
    assert await book.cancellation("ticket-11") is None
    assert await levels(stock, mug) == (0, 0, 2)


async def test_a_book_cancels_only_with_the_stock_of_its_own_database(
    engine: AsyncEngine, stock: DurableReservations, tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError, match="stock"):
        await OrderBook(engine).cancel("order-1", "ticket-12")
    elsewhere = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'elsewhere.sqlite3'}")
    with pytest.raises(ConfigurationError, match="one database"):
        OrderBook(elsewhere, stock=stock)
    await elsewhere.dispose()


async def test_each_change_of_an_order_writes_its_event_once_in_its_own_transaction(
    engine: AsyncEngine, stock: DurableReservations
) -> None:
    book = OrderBook(engine, stock=stock, outbox=Outbox(), source="inventory")
    mug = sku("MUG")
    order = await paid(stock, book, (mug, 3))
    hold = await stock.store.get(order.id)
    await book.open(hold)  # a redelivered payment: no second order, no second event
    await book.ship(order.id, "parcel-1", [(mug, 1)])
    await book.ship(order.id, "parcel-1", [(mug, 1)])  # a retry
    with pytest.raises(OverFulfilment):
        await book.ship(order.id, "parcel-2", [(mug, 5)])  # refused: rolled back, no event
    await book.cancel(order.id, "ticket-13")
    await book.cancel(order.id, "ticket-13")  # a retry
    async with engine.connect() as conn:
        columns = (OutboxMessage.event_id, OutboxMessage.key, OutboxMessage.body)
        rows = (await conn.execute(select(*columns).order_by(OutboxMessage.id))).all()
    assert [row.event_id for row in rows] == [
        f"order.created:{order.id}", "order.fulfilled:parcel-1", "order.cancelled:ticket-13"
    ]  # fmt: skip
    assert {row.key for row in rows} == {order.id}
    events = [CATALOG.decode(row.body) for row in rows]
    assert [(e.data.status, e.data.lines[0].quantity) for e in events] == [
        ("OPEN", 3), ("PARTIALLY_FULFILLED", 1), ("FULFILLED", 2)
    ]  # fmt: skip
    assert all(e.source == "inventory" for e in events)
