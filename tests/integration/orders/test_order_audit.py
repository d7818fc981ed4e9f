"""`OrderBook.audit`: the orders agree with the stock journal and their payments.

On SQLite and a real PostgreSQL, with a real Redis.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncEngine

from commercekit.orders import OrderAudit, OrderBook, RestockType
from commercekit.orders._tables import OrderLineRow
from commercekit.payments._tables import RefundRow
from commercekit.reservations import DurableReservations, JournalRow, StockReason
from tests.integration.orders.conftest import Shop, paid, sku


async def proven(stock: DurableReservations, book: OrderBook) -> OrderAudit:
    """Reconcile (the journal sums to the ledger), then audit; both must be clean."""
    assert (await stock.reconcile()).clean
    report = await book.audit()
    assert report.clean, report
    return report


async def test_a_whole_lifecycle_audits_clean_and_counts_orders_not_yet_opened(
    stock: DurableReservations, book: OrderBook
) -> None:
    mug, tea = sku("MUG"), sku("TEA")
    order = await paid(stock, book, (mug, 5), (tea, 2))
    await book.ship(order.id, "parcel-1", [(mug, 3)])
    await book.cancel(order.id, "cancel-1", [(tea, 1)])
    await book.receive_return(
        order.id,
        "return-1",
        [(mug, 1, RestockType.RESELL), (mug, 1, RestockType.DAMAGED), (mug, 1, RestockType.NONE)],
    )
    await stock.restock(mug, 2)
    waiting = await stock.confirm((await stock.reserve([(mug, 2)], ttl=60, owner="bob")).id)
    report = await proven(stock, book)
    assert report.unopened == 1  # confirmed, its order not opened yet: committed all the same
    await book.open(waiting)
    assert (await proven(stock, book)).unopened == 0


async def test_concurrent_shipments_cancellations_and_returns_audit_clean(
    stock: DurableReservations, book: OrderBook
) -> None:
    hat = sku("HAT")
    await stock.set_stock(hat, 60)

    async def customer(n: int) -> None:
        hold = await stock.reserve([(hat, 3)], ttl=60, owner=f"u{n}")
        confirmed = await stock.confirm(hold.id)
        order, again = await asyncio.gather(book.open(confirmed), book.open(confirmed))
        assert again.id == order.id
        shipped = [book.ship(order.id, f"s-{n}", [(hat, 2)]) for _ in range(2)]  # redelivered
        await asyncio.gather(*shipped, book.cancel(order.id, f"c-{n}", [(hat, 1)]))
        if n % 2:
            restock = (RestockType.RESELL, RestockType.DAMAGED)[n % 4 == 1]
            await asyncio.gather(
                *(book.receive_return(order.id, f"r-{n}", [(hat, 1, restock)]) for _ in range(2))
            )

    await asyncio.gather(*(customer(n) for n in range(12)))
    await proven(stock, book)
    level = (await stock.ledger.journal_levels())[hat, "default"]
    assert (level.committed, level.shipped, level.damaged) == (0, 12 * 2 - 6, 3)


async def test_a_line_changed_behind_the_book_is_found(
    stock: DurableReservations, book: OrderBook, engine: AsyncEngine
) -> None:
    mug = sku("MUG")
    order = await paid(stock, book, (mug, 2))
    await book.ship(order.id, "parcel-1", [(mug, 2)])
    await proven(stock, book)
    async with engine.begin() as conn:  # a hand-made "shipment" of a third unit
        await conn.execute(
            update(OrderLineRow)
            .where(OrderLineRow.order_id == order.id)
            .values(shipped=OrderLineRow.shipped + 1)
        )
    report = await book.audit()
    assert not report.clean
    assert report.stock_drift == {mug: {"committed": 1, "shipped": -1}}
    assert report.line_errors == {order.id: [f"{mug} at default: shipped and cancelled more "
                                             "than ordered"]}  # fmt: skip
    assert report.over_refunded == {}


async def test_a_lost_journal_row_of_a_shipment_is_found(
    stock: DurableReservations, book: OrderBook, engine: AsyncEngine
) -> None:
    mug = sku("MUG")
    order = await paid(stock, book, (mug, 3))
    await book.ship(order.id, "parcel-1", [(mug, 1)])
    async with engine.begin() as conn:
        await conn.execute(delete(JournalRow).where(JournalRow.reason == StockReason.SHIP.value))
    # The journal still sums to the ledger's sold units: only the orders tell the difference.
    assert await stock.ledger.journal_drift() == {}
    report = await book.audit()
    assert report.stock_drift == {mug: {"committed": 1, "shipped": -1}}
    assert report.line_errors == {}


async def test_a_refund_beyond_what_was_paid_is_found(shop: Shop, engine: AsyncEngine) -> None:
    mug = sku("MUG")
    order = await shop.order((mug, 2, "10.00"))
    await shop.book.cancel(order.id, "cancel-1")
    again = await asyncio.gather(*(shop.book.cancel(order.id, "cancel-1") for _ in range(3)))
    assert {made.refunded for made in again} == {Decimal("20.00")}  # once
    assert (await proven(shop.stock, shop.book)).over_refunded == {}
    async with engine.begin() as conn:  # a refund recorded twice, by hand
        await conn.execute(update(RefundRow).values(amount=RefundRow.amount + Decimal("5.00")))
    report = await shop.book.audit()
    assert report.over_refunded == {order.id: Decimal("5.00")}
    assert report.stock_drift == {}
    assert not report.clean


async def test_without_refunds_the_orders_own_refunds_are_summed(
    stock: DurableReservations, engine: AsyncEngine, shop: Shop
) -> None:
    mug = sku("MUG")
    order = await shop.order((mug, 2, "10.00"))
    await shop.book.cancel(order.id, "cancel-1", [(mug, 1)])
    await shop.book.ship(order.id, "parcel-1", [(mug, 1)])
    await shop.book.receive_return(order.id, "return-1", [(mug, 1, RestockType.NONE)])
    plain = OrderBook(engine, stock=stock)  # no RefundService: the orders' refunds are summed
    assert (await plain.audit()).clean
    async with engine.begin() as conn:
        await conn.execute(update(RefundRow).values(amount=RefundRow.amount + 1))
    assert (await plain.audit()).clean  # the refunds table is not read
    assert (await shop.book.audit()).over_refunded == {order.id: Decimal(2)}


async def test_an_audit_during_changes_reads_one_snapshot(
    stock: DurableReservations, book: OrderBook
) -> None:
    hat = sku("HAT")
    await stock.set_stock(hat, 200)
    done = asyncio.Event()

    async def customer(n: int) -> None:
        confirmed = await stock.confirm((await stock.reserve([(hat, 2)], ttl=60, owner="u")).id)
        order = await book.open(confirmed)
        await book.ship(order.id, f"s-{n}", [(hat, 1)])
        await book.cancel(order.id, f"c-{n}")

    async def customers() -> None:
        try:
            for wave in range(5):
                await asyncio.gather(*(customer(wave * 8 + n) for n in range(8)))
        finally:
            done.set()

    async def auditor() -> list[OrderAudit]:
        found = []
        while not done.is_set():
            found.append(await book.audit())
        return found

    _, audits = await asyncio.gather(customers(), auditor())
    assert len(audits) > 1
    assert [a for a in audits if not a.clean] == []
