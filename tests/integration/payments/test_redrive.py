"""`redrive_payments`: a payment whose outcome was lost is settled, once, on real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest
from sqlalchemy import text

from commercekit.events import InMemoryEventBus, OutboxRelay
from commercekit.payments import (
    Payment,
    PaymentIntent,
    PaymentService,
    PaymentSettlement,
    RefundService,
    SettlementOutcome,
    SimulatedProcessor,
    redrive_payments,
    settlement_outcome,
)
from commercekit.reservations import DurableReservations, ReservationStatus

from .conftest import Sessions

AGE = 0.3
"""The re-drive age of these tests, in seconds."""


async def charge(
    payments: PaymentService, reservations: DurableReservations, token: str = "tok_success"
) -> Payment:
    hold = await reservations.reserve([("SKU-1", 1)], ttl=60, owner="u-1")
    return await payments.pay(
        PaymentIntent(
            idempotency_key=str(uuid.uuid4()),
            reservation_id=hold.id,
            user_id="u-1",
            amount=Decimal("5.00"),
            currency="EUR",
            payment_method=token,
        )
    )


async def lose_event(sessions: Sessions, payment: Payment) -> None:
    """The outcome event never reaches the bus (deleted from the outbox)."""
    async with sessions() as session, session.begin():
        await session.execute(
            text("DELETE FROM commercekit_outbox WHERE event_id = :id"),
            {"id": f"payment:{payment.id}"},
        )


async def outbox_rows(sessions: Sessions, payment: Payment) -> int:
    async with sessions() as session:
        return int(
            await session.scalar(
                text("SELECT count(*) FROM commercekit_outbox WHERE event_id = :id"),
                {"id": f"payment:{payment.id}"},
            )
            or 0
        )


@pytest.fixture
def payments(sessions: Sessions, processor: SimulatedProcessor) -> PaymentService:
    return PaymentService(sessions, processor)


@pytest.fixture
async def bus(
    sessions: Sessions, reservations: DurableReservations, refunds: RefundService
) -> InMemoryEventBus:
    """The inventory side: settles every payment event the relay sends."""
    settlement = PaymentSettlement(reservations, refunds)
    events = InMemoryEventBus()
    events.subscribe("inventory", settlement.handler, types=["payment.confirmed", "payment.failed"])
    return events


async def relay(sessions: Sessions, bus: InMemoryEventBus) -> None:
    async with bus:
        await OutboxRelay(sessions, bus).relay_once()
        async with asyncio.timeout(10):
            await bus.drain()


async def test_a_payment_whose_event_was_lost_is_settled_once_it_is_old_enough(
    sessions: Sessions,
    reservations: DurableReservations,
    payments: PaymentService,
    bus: InMemoryEventBus,
) -> None:
    lost = await charge(payments, reservations)
    await lose_event(sessions, lost)
    assert await redrive_payments(sessions, older_than=AGE) == []  # too young: left alone
    await asyncio.sleep(AGE + 0.1)
    young = await charge(payments, reservations)
    await lose_event(sessions, young)

    redriven = await redrive_payments(sessions, older_than=AGE)
    assert [p.id for p in redriven] == [lost.id]
    assert await redrive_payments(sessions, older_than=AGE) == []  # not again before AGE
    await relay(sessions, bus)
    assert await settlement_outcome(sessions, lost.id) is SettlementOutcome.CONFIRMED
    assert (await reservations.get(lost.reservation_id)).status is ReservationStatus.CONFIRMED
    assert await settlement_outcome(sessions, young.id) is None
    await asyncio.sleep(AGE + 0.1)
    assert [p.id for p in await redrive_payments(sessions, older_than=AGE)] == [young.id]
    assert await outbox_rows(sessions, lost) == 1


async def test_a_dead_lettered_outcome_is_sent_again_with_its_id(
    sessions: Sessions,
    reservations: DurableReservations,
    payments: PaymentService,
    bus: InMemoryEventBus,
) -> None:
    declined = await charge(payments, reservations, token="tok_declined")
    async with sessions() as session, session.begin():  # relayed, then lost downstream
        await session.execute(text("UPDATE commercekit_outbox SET sent_at = now()"))
    await asyncio.sleep(AGE + 0.1)
    assert [p.id for p in await redrive_payments(sessions, older_than=AGE)] == [declined.id]
    await relay(sessions, bus)
    assert await settlement_outcome(sessions, declined.id) is SettlementOutcome.RELEASED
    assert (await reservations.get(declined.reservation_id)).status is ReservationStatus.RELEASED
    assert await outbox_rows(sessions, declined) == 1  # the same event, sent again
    await asyncio.sleep(AGE + 0.1)
    assert await redrive_payments(sessions, older_than=AGE) == []  # settled: never again


async def test_a_settled_payment_is_never_redriven(
    sessions: Sessions,
    reservations: DurableReservations,
    payments: PaymentService,
    bus: InMemoryEventBus,
) -> None:
    paid = await charge(payments, reservations)
    await relay(sessions, bus)
    await asyncio.sleep(AGE + 0.1)
    assert await redrive_payments(sessions, older_than=AGE) == []
    assert await settlement_outcome(sessions, paid.id) is SettlementOutcome.CONFIRMED


async def test_two_schedulers_racing_redrive_each_payment_once(
    sessions: Sessions,
    reservations: DurableReservations,
    payments: PaymentService,
    processor: SimulatedProcessor,
    bus: InMemoryEventBus,
) -> None:
    lost = [await charge(payments, reservations) for _ in range(6)]
    for payment in lost:
        await lose_event(sessions, payment)
    await asyncio.sleep(AGE + 0.1)
    rounds = await asyncio.gather(*(redrive_payments(sessions, older_than=AGE) for _ in range(4)))
    redriven = sorted(p.id for found in rounds for p in found)
    assert redriven == sorted(p.id for p in lost)  # each once, across the four
    await relay(sessions, bus)
    for payment in lost:
        assert await outbox_rows(sessions, payment) == 1
        assert await settlement_outcome(sessions, payment.id) is SettlementOutcome.CONFIRMED
    level = await reservations.stock("SKU-1")
    assert (level.available, level.held, level.sold) == (4, 0, 6)
    assert processor.charge_calls == 6  # nothing was charged again
