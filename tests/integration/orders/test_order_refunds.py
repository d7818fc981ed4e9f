"""Refunds of cancelled units, on SQLite and PostgreSQL with real Redis: once, never past paid."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from commercekit.errors import ConfigurationError, OverRefund
from commercekit.events import Outbox
from commercekit.events.outbox import OutboxMessage
from commercekit.orders import OrderBook, OrderPayment
from commercekit.payments import (
    RefundAction,
    RefundReason,
    RefundService,
    RefundStatus,
    SimulatedProcessor,
)
from commercekit.payments._tables import RefundRow
from commercekit.reservations import DurableReservations

from .conftest import Shop, sku


async def refund_count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(RefundRow)) or 0)


async def test_an_order_records_its_payment_split_over_its_lines(shop: Shop) -> None:
    mug, tea = sku("MUG"), sku("TEA")
    order = await shop.order((mug, 3, "10.00"), (tea, 1, "5.00"), pay="31.50")  # 10% off
    assert order.payment == OrderPayment(
        id=shop.payment.id, amount=Decimal("31.50"), currency="EUR"
    )
    amounts = {line.sku: line.amount for line in order.lines}
    assert amounts == {mug: Decimal("27.00"), tea: Decimal("4.50")}


async def test_a_free_line_is_paid_nothing_and_the_rest_by_their_prices(shop: Shop) -> None:
    mug, gift = sku("MUG"), sku("GIFT")
    order = await shop.order((mug, 2, "10.00"), (gift, 1, "0"), pay="18.00")  # 10% off the mugs
    amounts = {line.sku: line.amount for line in order.lines}
    assert amounts == {mug: Decimal("18.00"), gift: Decimal(0)}  # not split by units


async def test_a_cancellation_refunds_what_its_units_were_paid_once(
    shop: Shop, processor: SimulatedProcessor, refunds: RefundService
) -> None:
    mug, tea = sku("MUG"), sku("TEA")
    order = await shop.order((mug, 3, "10.00"), (tea, 1, "5.00"))
    first = await shop.book.cancel(order.id, "ticket-1", [(mug, 1)])
    assert first.refunded == Decimal("10.00")
    assert first.refund_id is not None
    refund = await refunds.find(first.refund_id)
    assert refund is not None
    assert (refund.amount, refund.status, refund.action, refund.reason) == (
        Decimal("10.00"),
        RefundStatus.COMPLETED,
        RefundAction.REFUND_LINES,
        RefundReason.ORDER_CANCELLED,
    )
    assert await shop.book.cancel(order.id, "ticket-1", [(mug, 1)]) == first  # a replay
    await shop.book.ship(order.id, "parcel-1", [(mug, 1)])
    rest = await shop.book.cancel(order.id, "ticket-2")  # the other mug and the tea
    assert rest.refunded == Decimal("15.00")
    assert processor.refunded(shop.payment.id) == Decimal("25.00")  # the shipped mug is kept
    assert await refunds.refundable(shop.payment) == Decimal("10.00")
    assert await shop.book.cancellation("ticket-2") == rest
    assert await refund_count(shop.book.engine) == 2


async def test_cancelling_a_line_unit_by_unit_refunds_exactly_its_amount(
    shop: Shop, processor: SimulatedProcessor
) -> None:
    mug = sku("MUG")
    order = await shop.order((mug, 3, "3.00"), pay="10.00")  # 3.33 and a third each
    parts = [(await shop.book.cancel(order.id, f"t-{i}", [(mug, 1)])).refunded for i in range(3)]
    assert sum(parts) == Decimal("10.00")
    assert sorted(parts) == [Decimal("3.33"), Decimal("3.33"), Decimal("3.34")]
    assert processor.refunded(shop.payment.id) == Decimal("10.00")


async def test_concurrent_cancellations_refund_exactly_what_was_paid(
    shop: Shop, processor: SimulatedProcessor, refunds: RefundService
) -> None:
    mug = sku("MUG")
    order = await shop.order((mug, 10, "1.00"), pay="7.77")
    tries = [shop.book.cancel(order.id, f"t-{i % 12}", [(mug, 1)]) for i in range(14)]
    made = await asyncio.gather(*tries, return_exceptions=True)
    ok = {c.id: c for c in made if not isinstance(c, BaseException)}
    assert len(ok) == 10  # 12 ids, 10 units: two ids find nothing left (and refund nothing)
    assert sum(c.refunded for c in ok.values()) == Decimal("7.77")
    assert await refund_count(shop.book.engine) == 10
    assert processor.refunded(shop.payment.id) == Decimal("7.77")
    assert await refunds.refundable(shop.payment) == Decimal(0)


async def test_a_refund_made_first_caps_what_a_cancellation_gives_back(
    shop: Shop, refunds: RefundService, processor: SimulatedProcessor
) -> None:
    mug = sku("MUG")
    order = await shop.order((mug, 2, "10.00"))
    await refunds.refund(shop.payment, amount=Decimal("15.00"), key="goodwill")
    cancelled = await shop.book.cancel(order.id, "ticket-1")
    assert cancelled.refunded == Decimal("5.00")  # what was left of the 20.00
    assert processor.refunded(shop.payment.id) == Decimal("20.00")
    assert await shop.book.cancel(order.id, "ticket-1") == cancelled


async def test_without_a_processor_the_refund_is_requested_with_the_cancellation(
    engine: AsyncEngine, stock: DurableReservations, processor: SimulatedProcessor
) -> None:
    recording = RefundService(async_sessionmaker(engine), None, outbox=Outbox(), source="shop")
    shop = Shop(engine, stock, recording, processor)
    shop.book.outbox = Outbox()
    mug = sku("MUG")
    order = await shop.order((mug, 2, "4.00"))
    cancelled = await shop.book.cancel(order.id, "ticket-1", [(mug, 1)])
    assert cancelled.refund_id is not None
    refund = await recording.find(cancelled.refund_id)
    assert refund is not None
    assert (refund.status, refund.amount) == (RefundStatus.REQUESTED, Decimal("4.00"))
    async with engine.connect() as conn:
        types = list(
            await conn.scalars(select(OutboxMessage.event_type).order_by(OutboxMessage.id))
        )
    assert types == ["order.created", "refund.requested", "order.cancelled"]


async def test_an_order_opened_without_a_payment_refunds_nothing(
    shop: Shop, engine: AsyncEngine
) -> None:
    mug = sku("MUG")
    await shop.stock.set_stock(mug, 1)
    hold = await shop.stock.reserve([(mug, 1)], ttl=60, owner="alice")
    order = await shop.book.open(await shop.stock.confirm(hold.id))
    assert order.payment is None
    cancelled = await shop.book.cancel(order.id, "ticket-1")
    assert (cancelled.refund_id, cancelled.refunded) == (None, Decimal(0))
    assert await refund_count(engine) == 0


async def test_refunds_on_another_database_are_refused(
    engine: AsyncEngine, tmp_path: Path, processor: SimulatedProcessor
) -> None:
    other = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'other.sqlite3'}")
    with pytest.raises(ConfigurationError):
        OrderBook(engine, refunds=RefundService(async_sessionmaker(other), processor))
    await other.dispose()


async def test_a_refund_racing_a_cancellation_never_makes_the_cancellation_fail(
    shop: Shop, refunds: RefundService, monkeypatch: pytest.MonkeyPatch
) -> None:
    mug = sku("MUG")
    order = await shop.order((mug, 2, "10.00"))
    request = refunds.request
    asked = asyncio.Event()

    async def slow_request(*args: Any, **kwargs: Any) -> Any:
        asked.set()
        await asyncio.sleep(0.3)  # another refund of the payment tries meanwhile
        return await request(*args, **kwargs)

    monkeypatch.setattr(refunds, "request", slow_request)

    async def goodwill() -> bool:
        await asked.wait()
        try:
            await RefundService(refunds.sessions, None).refund(
                shop.payment, amount=Decimal("15.00"), key="goodwill"
            )
        except OverRefund:
            return False
        return True

    cancelled, made = await asyncio.gather(shop.book.cancel(order.id, "ticket-1"), goodwill())
    assert cancelled.refunded == Decimal("20.00")  # it read what was left, and kept it
    assert made is False  # the goodwill refund found nothing left
    assert await refunds.refundable(shop.payment) == Decimal(0)
