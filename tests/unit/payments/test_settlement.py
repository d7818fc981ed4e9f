"""`PaymentSettlement` in the embedded mode: fakeredis holds, an SQLite ledger and tables.

Who decides a refund: the plugins, then the ``policy=`` given, then the default.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from fakeredis import FakeAsyncRedis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from commercekit.errors import OrderNotFound
from commercekit.events import Envelope, PaymentConfirmed
from commercekit.orders import OrderBook
from commercekit.payments import (
    Money,
    PaymentCase,
    PaymentIssue,
    PaymentSettlement,
    RefundAction,
    RefundDecision,
    RefundReason,
    RefundService,
    SettlementOutcome,
    SimulatedProcessor,
)
from commercekit.plugins import PluginManager, hookimpl
from commercekit.plugins.manager import DEFAULT_PLUGINS
from commercekit.reservations import (
    DurableReservations,
    RedisReservationStore,
    ReservationLedger,
    ReservationStatus,
)
from commercekit.sql import migrate

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'shop.sqlite3'}")
    await migrate(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> Sessions:
    return async_sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
async def reservations(engine: AsyncEngine) -> AsyncIterator[DurableReservations]:
    client = FakeAsyncRedis()
    store = RedisReservationStore(client, guarded=True)
    durable = DurableReservations(store, ReservationLedger(engine))
    await durable.start()
    await durable.set_stock("SKU-1", 10)
    yield durable
    await client.aclose()


@pytest.fixture
def refunds(sessions: Sessions) -> RefundService:
    return RefundService(sessions, SimulatedProcessor(shared=True))


def paid(reservation_id: str) -> Envelope[PaymentConfirmed]:
    confirmed = PaymentConfirmed(
        payment_id=str(uuid.uuid4()), reservation_id=reservation_id, user_id="u-1",
        amount=Decimal("20.00"), currency="EUR",
    )  # fmt: skip
    return Envelope.wrap(confirmed, source="payments")


async def late(reservations: DurableReservations) -> Envelope[PaymentConfirmed]:
    hold = await reservations.reserve([("SKU-1", 1)], ttl=0.05, owner="u-1")
    await asyncio.sleep(0.15)
    return paid(hold.id)


async def refund_reasons(sessions: Sessions) -> list[tuple[str, str]]:
    async with sessions() as session:
        rows = await session.execute(text("SELECT reason, text FROM commercekit_refunds"))
        return sorted((reason, note) for reason, note in rows)


class Goodwill:
    """A shop's plugin: late payments are kept."""

    @hookimpl
    def commercekit_refund_decision(self, case: PaymentCase) -> RefundDecision | None:
        if case.issue is not PaymentIssue.RESERVATION_EXPIRED:
            return None
        return RefundDecision(action=RefundAction.ACCEPT, reason=RefundReason.OTHER, text="kept")


class RefundWithANote:
    """A shop's own policy object."""

    def decide(self, case: PaymentCase) -> RefundDecision:
        return RefundDecision(
            action=RefundAction.REFUND_ALL, reason=RefundReason.OTHER, text="the shop's policy"
        )


async def test_without_plugins_or_a_policy_the_default_decides(
    sessions: Sessions, reservations: DurableReservations, refunds: RefundService
) -> None:
    settlement = PaymentSettlement(reservations, refunds)
    assert settlement.plugins.names() == sorted(DEFAULT_PLUGINS)  # no installed plugins
    result = await settlement.settle(await late(reservations))
    assert result.outcome is SettlementOutcome.REFUNDED
    assert await refund_reasons(sessions) == [
        ("LATE_PAYMENT", f"reservation {result.payment.reservation_id} expired before the payment")
    ]


async def test_the_plugin_decides_before_the_policy_and_the_policy_before_the_default(
    sessions: Sessions, reservations: DurableReservations, refunds: RefundService
) -> None:
    plugins = PluginManager([Goodwill()], load_entrypoints=False)
    settlement = PaymentSettlement(reservations, refunds, plugins=plugins, policy=RefundWithANote())
    kept = await settlement.settle(await late(reservations))
    assert kept.outcome is SettlementOutcome.ACCEPTED
    unknown = await settlement.settle(paid("no-such-reservation"))
    assert unknown.outcome is SettlementOutcome.REFUNDED
    assert await refund_reasons(sessions) == [("OTHER", "the shop's policy")]


async def test_a_policy_alone_decides_before_the_default(
    sessions: Sessions, reservations: DurableReservations, refunds: RefundService
) -> None:
    settlement = PaymentSettlement(reservations, refunds, policy=RefundWithANote())
    assert (await settlement.settle(await late(reservations))).outcome is SettlementOutcome.REFUNDED
    assert await refund_reasons(sessions) == [("OTHER", "the shop's policy")]


# ------------------------------------------------------------------- orders
async def test_a_confirming_payment_opens_its_order_once_however_often_it_comes(
    engine: AsyncEngine, reservations: DurableReservations, refunds: RefundService
) -> None:
    book = OrderBook(engine)
    settlement = PaymentSettlement(reservations, refunds, orders=book)
    hold = await reservations.reserve([("SKU-1", 2)], ttl=60, owner="u-1")
    event = paid(hold.id)
    assert (await settlement.settle(event)).outcome is SettlementOutcome.CONFIRMED
    assert (await settlement.settle(event)).outcome is SettlementOutcome.DUPLICATE
    order = await book.get(hold.id)
    assert [(ln.sku, ln.committed) for ln in order.lines] == [("SKU-1", 2)]
    # A late payment is refunded, an unknown reservation too: no order for either.
    for event in (await late(reservations), paid("no-such-reservation")):
        assert (await settlement.settle(event)).outcome is SettlementOutcome.REFUNDED
        with pytest.raises(OrderNotFound):
            await book.get(event.data.reservation_id)


async def test_a_crash_before_the_outcome_is_recorded_leaves_no_order_and_the_redelivery_opens_it(
    engine: AsyncEngine,
    reservations: DurableReservations,
    refunds: RefundService,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    book = OrderBook(engine)
    settlement = PaymentSettlement(reservations, refunds, orders=book)
    hold = await reservations.reserve([("SKU-1", 1)], ttl=60, owner="u-1")
    event = paid(hold.id)
    claim = settlement.processed.claim

    async def crash(*args: object, **kwargs: object) -> bool:
        await claim(*args, **kwargs)  # type: ignore[arg-type]
        raise ConnectionResetError("the database went away mid-transaction")

    monkeypatch.setattr(settlement.processed, "claim", crash)
    with pytest.raises(ConnectionResetError):
        await settlement.settle(event)
    assert (await reservations.get(hold.id)).status is ReservationStatus.CONFIRMED
    with pytest.raises(OrderNotFound):  # rolled back with the outcome
        await book.get(hold.id)
    monkeypatch.setattr(settlement.processed, "claim", claim)
    assert (await settlement.settle(event)).outcome is SettlementOutcome.CONFIRMED
    assert (await book.get(hold.id)).committed == 1


async def test_the_order_records_its_payment_less_an_overpayment_refunded_at_once(
    engine: AsyncEngine, reservations: DurableReservations, refunds: RefundService
) -> None:
    await reservations.set_stock("SKU-2", 10)
    book = OrderBook(
        engine, refunds=refunds, prices=lambda _: {"SKU-1": Decimal("5"), "SKU-2": Decimal("2.5")}
    )
    settlement = PaymentSettlement(
        reservations,
        refunds,
        orders=book,
        prices=lambda _: Money(amount=Decimal("15.00"), currency="EUR"),
    )
    hold = await reservations.reserve([("SKU-1", 2), ("SKU-2", 2)], ttl=60, owner="u-1")
    event = paid(hold.id)  # 20.00 for 15.00 of goods: 5.00 refunded now
    result = await settlement.settle(event)
    assert result.outcome is SettlementOutcome.CONFIRMED
    order = await book.get(hold.id)
    assert order.payment is not None
    assert (order.payment.id, order.payment.amount) == (event.data.payment_id, Decimal("20.00"))
    assert [(ln.sku, ln.amount) for ln in order.lines] == [
        ("SKU-1", Decimal("10.00")),
        ("SKU-2", Decimal("5.00")),
    ]
