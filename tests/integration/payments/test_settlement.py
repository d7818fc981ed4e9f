"""Payment events settled against real Redis holds and a real PostgreSQL ledger."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal

import pytest
from sqlalchemy import text

from commercekit.errors import ConfigurationError, RefundError
from commercekit.payments import (
    Money,
    Payment,
    PaymentCase,
    PaymentIssue,
    PaymentSettlement,
    RefundAction,
    RefundDecision,
    RefundReason,
    RefundService,
    RefundStatus,
    SettlementOutcome,
    SimulatedProcessor,
)
from commercekit.plugins import PluginManager, hookimpl
from commercekit.reservations import DurableReservations, Reservation, ReservationStatus

from .conftest import Sessions, outbox_types, pay, refund_rows


async def hold(reservations: DurableReservations, ttl: float = 60) -> Reservation:
    return await reservations.reserve([("SKU-1", 2)], ttl=ttl, owner="u-1")


async def expired_hold(reservations: DurableReservations) -> Reservation:
    reservation = await hold(reservations, ttl=0.05)
    await asyncio.sleep(0.15)
    return reservation


def twenty_euros(_: Reservation) -> Money:
    return Money(amount=Decimal("20.00"), currency="EUR")


async def test_a_timely_payment_confirms_its_reservation(
    sessions: Sessions, reservations: DurableReservations, refunds: RefundService
) -> None:
    reservation = await hold(reservations)
    payment, event = await pay(refunds.processor, reservation.id)  # type: ignore[arg-type]
    settlement = PaymentSettlement(reservations, refunds, prices=twenty_euros)
    result = await settlement.settle(event)
    assert result.outcome is SettlementOutcome.CONFIRMED
    assert (await reservations.get(reservation.id)).status is ReservationStatus.CONFIRMED
    assert (await settlement.settle(event)).outcome is SettlementOutcome.DUPLICATE
    assert await settlement.settlement_of(payment.id) is SettlementOutcome.CONFIRMED
    assert await refund_rows(sessions) == []


async def test_late_payment_three_deliveries_two_racing_consumers_one_refund(
    sessions: Sessions,
    make_reservations: Callable[[], DurableReservations],
    reservations: DurableReservations,
    processor: SimulatedProcessor,
) -> None:
    reservation = await expired_hold(reservations)
    payment, event = await pay(processor, reservation.id)
    heard: list[str] = []

    class Listener:
        @hookimpl
        def commercekit_payment_outcome(self, payment: Payment) -> None:
            heard.append(payment.id)

    plugins = PluginManager([Listener()], load_entrypoints=False)

    def consumer() -> PaymentSettlement:  # a replica: its own store client view and services
        return PaymentSettlement(
            make_reservations(), RefundService(sessions, processor), plugins=plugins
        )

    first, second = consumer(), consumer()
    # Two consumers race on the same event, then a third delivery comes late.
    racing = await asyncio.gather(first.settle(event), second.settle(event))
    late = await first.settle(event)

    outcomes = sorted(r.outcome for r in [*racing, late])
    assert outcomes == [
        SettlementOutcome.DUPLICATE,
        SettlementOutcome.DUPLICATE,
        SettlementOutcome.REFUNDED,
    ]
    refunded = next(r for r in racing if r.outcome is SettlementOutcome.REFUNDED)
    assert refunded.issue is PaymentIssue.RESERVATION_EXPIRED
    assert refunded.decision is not None
    assert refunded.decision.reason is RefundReason.LATE_PAYMENT
    rows = await refund_rows(sessions)
    assert [(r[0], r[1], r[2], r[4]) for r in rows] == [
        (payment.id, "LATE_PAYMENT", Decimal("20.00"), "COMPLETED")
    ]
    assert processor.refund_calls == 1
    assert processor.refunded(payment.id) == Decimal("20.00")
    assert await outbox_types(sessions) == ["refund.requested", "refund.completed"]
    assert (await reservations.get(reservation.id)).status is ReservationStatus.EXPIRED
    assert heard == [payment.id]
    level = await reservations.stock("SKU-1")
    assert (level.available, level.held, level.sold) == (10, 0, 0)


async def test_many_racing_deliveries_of_a_late_payment_still_refund_once(
    sessions: Sessions,
    make_reservations: Callable[[], DurableReservations],
    reservations: DurableReservations,
    processor: SimulatedProcessor,
) -> None:
    reservation = await expired_hold(reservations)
    _, event = await pay(processor, reservation.id)
    consumers = [
        PaymentSettlement(make_reservations(), RefundService(sessions, processor)) for _ in range(6)
    ]
    results = await asyncio.gather(*(c.settle(event) for c in consumers))
    assert [r.outcome for r in results].count(SettlementOutcome.REFUNDED) == 1
    assert processor.refund_calls == 1
    assert len(await refund_rows(sessions)) == 1
    assert await outbox_types(sessions) == ["refund.requested", "refund.completed"]


async def test_a_double_payment_refunds_the_second(
    sessions: Sessions,
    reservations: DurableReservations,
    processor: SimulatedProcessor,
    refunds: RefundService,
) -> None:
    reservation = await hold(reservations)
    settlement = PaymentSettlement(reservations, refunds, prices=twenty_euros)
    first, first_event = await pay(processor, reservation.id)
    second, second_event = await pay(processor, reservation.id)

    assert (await settlement.settle(first_event)).outcome is SettlementOutcome.CONFIRMED
    result = await settlement.settle(second_event)
    assert result.outcome is SettlementOutcome.REFUNDED
    assert result.issue is PaymentIssue.ALREADY_PAID
    assert [(r[0], r[1]) for r in await refund_rows(sessions)] == [(second.id, "DOUBLE_PAYMENT")]
    assert processor.refunded(second.id) == Decimal("20.00")
    assert processor.refunded(first.id) == Decimal(0)
    assert (await reservations.get(reservation.id)).status is ReservationStatus.CONFIRMED


async def test_two_payments_racing_for_one_reservation_confirm_once_refund_once(
    sessions: Sessions,
    make_reservations: Callable[[], DurableReservations],
    reservations: DurableReservations,
    processor: SimulatedProcessor,
) -> None:
    reservation = await hold(reservations)
    (a, a_event), (b, b_event) = (
        await pay(processor, reservation.id),
        await pay(processor, reservation.id),
    )
    one = PaymentSettlement(make_reservations(), RefundService(sessions, processor))
    two = PaymentSettlement(make_reservations(), RefundService(sessions, processor))
    results = await asyncio.gather(one.settle(a_event), two.settle(b_event))
    assert sorted(r.outcome for r in results) == [
        SettlementOutcome.CONFIRMED,
        SettlementOutcome.REFUNDED,
    ]
    assert processor.refunded(a.id) + processor.refunded(b.id) == Decimal("20.00")
    assert len(await refund_rows(sessions)) == 1
    level = await reservations.stock("SKU-1")
    assert level.sold == 2


async def test_an_overpayment_confirms_and_refunds_the_difference_with_its_reason(
    sessions: Sessions,
    reservations: DurableReservations,
    processor: SimulatedProcessor,
    refunds: RefundService,
) -> None:
    reservation = await hold(reservations)
    payment, event = await pay(processor, reservation.id, "25.00")
    result = await PaymentSettlement(reservations, refunds, prices=twenty_euros).settle(event)
    assert result.outcome is SettlementOutcome.CONFIRMED
    assert [(r[1], r[2], r[3], r[5]) for r in await refund_rows(sessions)] == [
        ("OVERPAYMENT", Decimal("5.00"), "REFUND_DIFFERENCE",
         "paid 25.00 EUR, expected 20.00 EUR: refunding 5.00"),
    ]  # fmt: skip
    assert processor.refunded(payment.id) == Decimal("5.00")
    assert (await reservations.get(reservation.id)).status is ReservationStatus.CONFIRMED


async def test_an_underpayment_is_refunded_and_the_hold_can_still_be_paid(
    sessions: Sessions,
    reservations: DurableReservations,
    processor: SimulatedProcessor,
    refunds: RefundService,
) -> None:
    reservation = await hold(reservations)
    settlement = PaymentSettlement(reservations, refunds)
    _, short_event = await pay(processor, reservation.id, "15.00")
    result = await settlement.settle(short_event, expected=twenty_euros(reservation))
    assert result.outcome is SettlementOutcome.REFUNDED
    assert [(r[1], r[2]) for r in await refund_rows(sessions)] == [
        ("UNDERPAYMENT", Decimal("15.00"))
    ]
    assert (await reservations.get(reservation.id)).status is ReservationStatus.PENDING

    _, right_event = await pay(processor, reservation.id, "20.00")
    retry = await settlement.settle(right_event, expected=twenty_euros(reservation))
    assert retry.outcome is SettlementOutcome.CONFIRMED  # not mistaken for a double payment


async def test_payment_for_an_unknown_or_cancelled_reservation_is_refunded(
    sessions: Sessions,
    reservations: DurableReservations,
    processor: SimulatedProcessor,
    refunds: RefundService,
) -> None:
    settlement = PaymentSettlement(reservations, refunds)
    _, unknown = await pay(processor, "no-such-reservation")
    cancelled = await hold(reservations)
    await reservations.release(cancelled.id)
    _, late = await pay(processor, cancelled.id)
    assert (await settlement.settle(unknown)).issue is PaymentIssue.RESERVATION_UNKNOWN
    assert (await settlement.settle(late)).issue is PaymentIssue.RESERVATION_RELEASED
    reasons = sorted(r[1] for r in await refund_rows(sessions))
    assert reasons == ["RESERVATION_CANCELLED", "UNKNOWN_RESERVATION"]


async def test_a_failed_payment_releases_the_hold(
    sessions: Sessions,
    reservations: DurableReservations,
    processor: SimulatedProcessor,
    refunds: RefundService,
) -> None:
    reservation = await hold(reservations)
    _, event = await pay(processor, reservation.id, token="tok_declined")
    result = await PaymentSettlement(reservations, refunds).settle(event)
    assert result.outcome is SettlementOutcome.RELEASED
    assert (await reservations.get(reservation.id)).status is ReservationStatus.RELEASED
    assert (await reservations.stock("SKU-1")).available == 10
    assert await refund_rows(sessions) == []


class Goodwill:
    """A shop's plugin: late payments are kept (the order ships from the back store)."""

    @hookimpl
    def commercekit_refund_decision(self, case: PaymentCase) -> RefundDecision | None:
        if case.issue is PaymentIssue.RESERVATION_EXPIRED:
            return RefundDecision(
                action=RefundAction.ACCEPT, reason=RefundReason.OTHER, text="shipped anyway"
            )
        return None


async def test_a_plugin_refund_decision_overrides_the_default(
    sessions: Sessions,
    reservations: DurableReservations,
    processor: SimulatedProcessor,
    refunds: RefundService,
) -> None:
    plugins = PluginManager([Goodwill()], load_entrypoints=False)
    settlement = PaymentSettlement(reservations, refunds, plugins=plugins)
    reservation = await expired_hold(reservations)
    _, late = await pay(processor, reservation.id)
    result = await settlement.settle(late)
    assert result.outcome is SettlementOutcome.ACCEPTED
    assert result.decision is not None
    assert result.decision.text == "shipped anyway"
    assert await refund_rows(sessions) == []
    assert processor.refund_calls == 0

    _, unknown = await pay(processor, "nope")  # the plugin returns None: the default decides
    assert (await settlement.settle(unknown)).outcome is SettlementOutcome.REFUNDED


class RefundWithANote:
    """A shop's own policy object: refunds everything, saying so."""

    def decide(self, case: PaymentCase) -> RefundDecision:
        return RefundDecision(
            action=RefundAction.REFUND_ALL, reason=RefundReason.OTHER, text="the shop's policy"
        )


async def test_a_plugin_decides_before_the_policy_given_and_the_policy_before_the_default(
    sessions: Sessions,
    reservations: DurableReservations,
    processor: SimulatedProcessor,
    refunds: RefundService,
) -> None:
    plugins = PluginManager([Goodwill()], load_entrypoints=False)
    settlement = PaymentSettlement(reservations, refunds, plugins=plugins, policy=RefundWithANote())
    reservation = await expired_hold(reservations)
    _, late = await pay(processor, reservation.id)
    kept = await settlement.settle(late)
    assert kept.outcome is SettlementOutcome.ACCEPTED  # the plugin's decision
    assert kept.decision is not None
    assert kept.decision.text == "shipped anyway"

    _, unknown = await pay(processor, "nope")  # the plugin returns None: the policy decides
    refunded = await settlement.settle(unknown)
    assert refunded.outcome is SettlementOutcome.REFUNDED
    assert refunded.decision is not None
    assert (refunded.decision.reason, refunded.decision.text) == (
        RefundReason.OTHER,
        "the shop's policy",
    )
    assert [(r[1], r[5]) for r in await refund_rows(sessions)] == [("OTHER", "the shop's policy")]


async def test_a_crash_after_confirming_is_not_mistaken_for_a_double_payment(
    sessions: Sessions,
    reservations: DurableReservations,
    processor: SimulatedProcessor,
    refunds: RefundService,
) -> None:
    reservation = await hold(reservations)
    payment, event = await pay(processor, reservation.id)
    settlement = PaymentSettlement(reservations, refunds)
    # The first delivery claimed the reservation and confirmed it, then died before recording.
    await settlement._claim(payment)
    await reservations.confirm(reservation.id)
    result = await settlement.settle(event)
    assert result.outcome is SettlementOutcome.CONFIRMED
    assert await refund_rows(sessions) == []
    async with sessions() as session:
        processed = await session.scalar(text("SELECT count(*) FROM commercekit_processed_events"))
    assert processed == 1


async def test_a_record_only_refund_service_leaves_the_refund_to_the_processor_side(
    sessions: Sessions, reservations: DurableReservations, processor: SimulatedProcessor
) -> None:
    reservation = await expired_hold(reservations)
    payment, event = await pay(processor, reservation.id)
    recording = RefundService(sessions, None)  # the inventory side: no processor
    result = await PaymentSettlement(reservations, recording).settle(event)
    assert result.outcome is SettlementOutcome.REFUNDED
    assert result.refund is not None
    assert result.refund.status is RefundStatus.REQUESTED
    assert await recording.retry_pending() == []
    with pytest.raises(ConfigurationError):
        await recording.complete(result.refund.id)
    assert await outbox_types(sessions) == ["refund.requested"]

    # The payment side, in another process: a processor that did not make the charge.
    elsewhere = SimulatedProcessor(shared=True)
    paying = RefundService(sessions, elsewhere)
    done = await paying.complete(result.refund.id)
    again = await paying.complete(result.refund.id)
    assert done.status is again.status is RefundStatus.COMPLETED
    assert elsewhere.refund_calls == 1
    assert elsewhere.refunded(payment.id) == Decimal("20.00")
    assert await outbox_types(sessions) == ["refund.requested", "refund.completed"]
    with pytest.raises(RefundError):  # without `shared`, only its own charges
        await SimulatedProcessor().refund(payment, Decimal("1.00"), "k-1")
