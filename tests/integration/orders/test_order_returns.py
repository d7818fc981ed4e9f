"""Returns on SQLite and PostgreSQL with real Redis: restocked as asked, refunded, once each."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from sqlalchemy import select

from commercekit.errors import ConfigurationError, InvalidRequest, OverReturn, ReturnConflict
from commercekit.events import CATALOG, Outbox
from commercekit.events.outbox import OutboxMessage
from commercekit.orders import OrderBook, RestockType, ReturnLine, return_move_id
from commercekit.payments import RefundReason, RefundService, SimulatedProcessor
from commercekit.payments.amounts import share
from commercekit.reservations import DurableReservations

from .conftest import Shop, levels, sku


async def shipped(shop: Shop, *lines: tuple[str, int, str]) -> str:
    """An order of `lines`, paid in full and shipped whole: its id."""
    order = await shop.order(*lines)
    await shop.book.ship(order.id, f"parcel-{order.id}", [(name, n) for name, n, _ in lines])
    return order.id


async def test_a_return_restocks_each_line_as_it_says_and_refunds_it_once(
    shop: Shop, stock: DurableReservations, refunds: RefundService, processor: SimulatedProcessor
) -> None:
    mug, tea = sku("MUG"), sku("TEA")
    order_id = await shipped(shop, (mug, 3, "10.00"), (tea, 2, "4.00"))
    assert await levels(stock, mug) == (0, 0, 3)
    lines = [(mug, 1, "RESELL"), (mug, 1, RestockType.DAMAGED), (tea, 2, "NONE")]
    made = await shop.book.receive_return(order_id, "rma-1", lines)
    assert made.lines == (
        ReturnLine(sku=mug, location="default", quantity=1, restock=RestockType.DAMAGED),
        ReturnLine(sku=mug, location="default", quantity=1, restock=RestockType.RESELL),
        ReturnLine(sku=tea, location="default", quantity=2, restock=RestockType.NONE),
    )
    assert made.refunded == Decimal("28.00")  # 2 mugs and 2 teas
    assert await shop.book.receive_return(order_id, "rma-1", reversed(lines)) == made  # a replay
    assert await levels(stock, mug) == (1, 0, 2)  # one mug on sale again, once
    assert await levels(stock, tea) == (0, 0, 2)  # written off: never on sale again
    assert await shop.book.damaged(mug) == 1
    sold = await shop.book.sold()
    assert (sold[mug, "default"], sold[tea, "default"]) == (2, 2)  # all but the resold mug
    order = await shop.book.get(order_id)
    assert [(ln.sku, ln.returned, ln.damaged, ln.returnable) for ln in order.lines] == sorted(
        [(mug, 2, 1, 1), (tea, 2, 0, 0)]
    )
    refund = await refunds.find(made.refund_id or "")
    assert refund is not None
    assert (refund.reason, refund.amount) == (RefundReason.ORDER_RETURNED, Decimal("28.00"))
    assert processor.refunded(shop.payment.id) == Decimal("28.00")
    assert await shop.book.returned("rma-1") == made


async def test_only_units_shipped_and_not_returned_come_back(shop: Shop) -> None:
    mug = sku("MUG")
    order = await shop.order((mug, 3, "5.00"))
    with pytest.raises(OverReturn) as nothing_shipped:
        await shop.book.receive_return(order.id, "rma-1", [(mug, 1, "RESELL")])
    assert nothing_shipped.value.over[0].committed == 0
    await shop.book.ship(order.id, "parcel-1", [(mug, 2)])
    await shop.book.receive_return(order.id, "rma-1", [(mug, 2, "RESELL")])
    with pytest.raises(OverReturn):
        await shop.book.receive_return(order.id, "rma-2", [(mug, 1, "NONE")])
    with pytest.raises(ReturnConflict):
        await shop.book.receive_return(order.id, "rma-1", [(mug, 1, "RESELL")])
    for bad in ([], [(mug, 1, "LOST")], [(mug, 0, "NONE")], [(mug, 1)]):
        with pytest.raises(InvalidRequest):
            await shop.book.receive_return(order.id, "rma-3", bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest):
        await shop.book.receive_return(order.id, "no spaces", [(mug, 1, "NONE")])


async def test_cancelled_and_returned_units_of_a_line_refund_exactly_its_amount(
    shop: Shop, processor: SimulatedProcessor
) -> None:
    mug = sku("MUG")
    order = await shop.order((mug, 3, "3.00"), pay="10.00")
    await shop.book.ship(order.id, "parcel-1", [(mug, 2)])
    parts = [(await shop.book.cancel(order.id, "t-1")).refunded]
    for i in range(2):
        parts.append(
            (await shop.book.receive_return(order.id, f"rma-{i}", [(mug, 1, "RESELL")])).refunded
        )
    assert sum(parts) == Decimal("10.00")
    assert processor.refunded(shop.payment.id) == Decimal("10.00")


async def test_concurrent_returns_never_take_back_more_than_shipped(
    shop: Shop, stock: DurableReservations
) -> None:
    mug = sku("MUG")
    order_id = await shipped(shop, (mug, 6, "2.00"))
    tries = [
        shop.book.receive_return(order_id, f"rma-{i % 8}", [(mug, 1, "RESELL")]) for i in range(10)
    ]
    made = await asyncio.gather(*tries, return_exceptions=True)
    ok = {r.id: r for r in made if not isinstance(r, BaseException)}
    failed = [r for r in made if isinstance(r, BaseException)]
    assert all(isinstance(r, OverReturn) for r in failed), failed
    assert len(ok) == 6
    assert sum(r.refunded for r in ok.values()) == Decimal("12.00")
    assert await levels(stock, mug) == (6, 0, 0)  # each resold unit on sale once


async def test_a_crash_before_redis_leaves_the_unit_unsellable_until_the_retry(
    shop: Shop, stock: DurableReservations, monkeypatch: pytest.MonkeyPatch
) -> None:
    mug = sku("MUG")
    order_id = await shipped(shop, (mug, 2, "2.00"))

    async def died(*args: object) -> bool:
        raise ConnectionResetError("the process died here")

    apply = stock.apply_move
    monkeypatch.setattr(stock, "apply_move", died)
    with pytest.raises(ConnectionResetError):
        await shop.book.receive_return(order_id, "rma-1", [(mug, 1, "RESELL")])
    assert (await levels(stock, mug))[0] == 0  # recorded, not on sale yet: never twice
    monkeypatch.setattr(stock, "apply_move", apply)
    again = await shop.book.receive_return(order_id, "rma-1", [(mug, 1, "RESELL")])
    assert again.refunded == Decimal("2.00")  # refunded once, by the first call
    assert await levels(stock, mug) == (1, 0, 1)
    assert await stock.apply_move(return_move_id("rma-1")) is False  # made: not again


async def test_a_return_writes_its_event_once_and_resale_needs_the_stock(
    shop: Shop, stock: DurableReservations
) -> None:
    shop.book.outbox = Outbox()
    mug = sku("MUG")
    order_id = await shipped(shop, (mug, 2, "2.00"))
    for _ in range(2):
        await shop.book.receive_return(order_id, "rma-1", [(mug, 1, "DAMAGED")])
    async with shop.book.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(OutboxMessage.body).where(OutboxMessage.event_type == "order.returned")
            )
        ).all()
    [event] = [CATALOG.decode(row.body) for row in rows]
    assert (event.id, event.data.return_id, event.data.lines[0].restock) == (
        "order.returned:rma-1",
        "rma-1",
        "DAMAGED",
    )
    without = OrderBook(shop.book.engine)
    with pytest.raises(ConfigurationError):
        await without.receive_return(order_id, "rma-2", [(mug, 1, "RESELL")])


async def test_the_orders_and_the_ledger_agree_on_what_is_sold_after_a_concurrent_mix(
    shop: Shop, stock: DurableReservations, refunds: RefundService
) -> None:
    mug, tea = sku("MUG"), sku("TEA")
    order = await shop.order((mug, 6, "2.00"), (tea, 4, "1.00"))
    await shop.book.ship(order.id, "parcel-1", [(mug, 4)])
    book = shop.book
    changes = [
        book.cancel(order.id, "c-1", [(tea, 1)]),
        book.cancel(order.id, "c-1", [(tea, 1)]),  # redelivered
        book.cancel(order.id, "c-2", [(tea, 2), (mug, 1)]),
        book.ship(order.id, "parcel-2", [(mug, 1), (tea, 1)]),
        book.ship(order.id, "parcel-3", [(tea, 1)]),
        book.receive_return(order.id, "r-1", [(mug, 1, "RESELL"), (mug, 1, "DAMAGED")]),
        book.receive_return(order.id, "r-1", [(mug, 1, "DAMAGED"), (mug, 1, "RESELL")]),
        book.receive_return(order.id, "r-2", [(mug, 2, "NONE")]),
        book.receive_return(order.id, "r-3", [(mug, 1, "RESELL")]),
    ]
    done = await asyncio.gather(*changes, return_exceptions=True)
    assert sum(not isinstance(d, BaseException) for d in done) >= 5
    ledger = await stock.ledger.location_totals()
    sold = await book.sold()
    for key in ((mug, "default"), (tea, "default")):
        assert ledger[key][1] == sold[key], key  # the ledger and the orders agree
        assert (await stock.stock(key[0])).sold == sold[key]  # and Redis with both
    after = await book.get(order.id)
    for line in after.lines:  # every unit is in exactly one place
        assert line.committed + line.shipped + line.cancelled == line.quantity
        assert line.resold + line.damaged <= line.returned <= line.shipped
        assert line.refunded == line.cancelled + line.returned
    # What was refunded is exactly the refunded units' share of each line, once.
    owed = sum(
        share(line.amount or Decimal(0), line.refunded, of=line.quantity, currency="EUR")
        for line in after.lines
    )
    assert shop.payment.amount - await refunds.refundable(shop.payment) == owed
