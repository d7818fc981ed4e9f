"""The payment side's reads (a reservation's payments and refunds, a payment's settlement)
and the correlation ids its events carry."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import text

from commercekit.events import CATALOG, Envelope
from commercekit.payments import (
    PaymentIntent,
    PaymentService,
    PaymentSettlement,
    PaymentStatus,
    RefundService,
    RefundStatus,
    SettlementOutcome,
    SimulatedProcessor,
    settlement_outcome,
)
from commercekit.reservations import DurableReservations

from .conftest import Sessions, pay


def intent(key: str, reservation_id: str, token: str = "tok_success") -> PaymentIntent:
    return PaymentIntent(
        idempotency_key=key, reservation_id=reservation_id, user_id="u-1",
        amount=Decimal("20.00"), currency="EUR", payment_method=token,
    )  # fmt: skip


async def test_for_reservation_lists_its_payments_oldest_first(
    sessions: Sessions, processor: SimulatedProcessor
) -> None:
    service = PaymentService(sessions, processor)
    first = await service.pay(intent("k-1", "r-1"))
    declined = await service.pay(intent("k-2", "r-1", token="tok_declined"))
    await service.pay(intent("k-3", "r-2"))
    payments = await service.for_reservation("r-1")
    assert [p.id for p in payments] == [first.id, declined.id]
    assert [p.status for p in payments] == [PaymentStatus.SUCCEEDED, PaymentStatus.FAILED]
    assert payments[0].idempotency_key == "k-1"
    assert await service.for_reservation("r-unknown") == []


async def test_refunds_for_reservation_lists_every_payments_refund(
    sessions: Sessions, processor: SimulatedProcessor
) -> None:
    recorder = RefundService(sessions, None)  # records only: the refunds stay REQUESTED
    one, _ = await pay(processor, "r-1")
    two, _ = await pay(processor, "r-1", "5.00")
    other, _ = await pay(processor, "r-2")
    refunds = [await recorder.refund(p) for p in (one, two, other)]
    found = await recorder.for_reservation("r-1")
    assert [r.id for r in found] == [refunds[0].id, refunds[1].id]
    assert [(r.payment_id, r.amount) for r in found] == [
        (one.id, Decimal("20.00")),
        (two.id, Decimal("5.00")),
    ]
    assert {r.status for r in found} == {RefundStatus.REQUESTED}
    assert await recorder.for_reservation("r-unknown") == []


async def test_settlement_outcome_reads_what_the_settlement_recorded(
    sessions: Sessions,
    processor: SimulatedProcessor,
    refunds: RefundService,
    reservations: DurableReservations,
) -> None:
    reservation = await reservations.reserve([("SKU-1", 1)], owner="u-1", ttl=60)
    payment, event = await pay(processor, reservation.id)
    assert await settlement_outcome(sessions, payment.id) is None
    await PaymentSettlement(reservations, refunds).settle(event)
    assert await settlement_outcome(sessions, payment.id) is SettlementOutcome.CONFIRMED
    assert await settlement_outcome(sessions, "p-unknown") is None


async def events(sessions: Sessions) -> list[Envelope[object]]:
    async with sessions() as session:
        bodies = await session.scalars(text("SELECT body FROM commercekit_outbox ORDER BY id"))
        return [CATALOG.decode(body) for body in bodies]


async def test_payment_and_refund_events_carry_the_callers_correlation_id(
    sessions: Sessions, processor: SimulatedProcessor
) -> None:
    service = PaymentService(sessions, processor)
    payment = await service.pay(intent("k-1", "r-1"), correlation_id="req-1")
    await service.pay(intent("k-1", "r-1"), correlation_id="req-2")  # a replay: no event
    recorder = RefundService(sessions, None)
    async with sessions() as session, session.begin():
        refund, _ = await recorder.request(session, payment, correlation_id="req-3")
    await RefundService(sessions, processor).complete(refund.id, correlation_id="req-4")
    found = [(e.type, e.correlation_id) for e in await events(sessions)]
    assert found == [
        ("payment.confirmed", "req-1"),
        ("refund.requested", "req-3"),
        ("refund.completed", "req-4"),
    ]
