"""The default refund policy, and a plugin's decision overriding it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from commercekit.payments import (
    DefaultRefundPolicy,
    Money,
    Payment,
    PaymentCase,
    PaymentIssue,
    PaymentStatus,
    PluginRefundPolicy,
    RefundAction,
    RefundDecision,
    RefundReason,
)
from commercekit.plugins import PluginManager, hookimpl
from commercekit.reservations import Reservation, ReservationLine, ReservationStatus


def payment(amount: str = "25.00", currency: str = "EUR") -> Payment:
    return Payment(
        id="p-1", reservation_id="r-1", user_id="u-1", amount=Decimal(amount),
        currency=currency, status=PaymentStatus.SUCCEEDED,
    )  # fmt: skip


def reservation(status: ReservationStatus) -> Reservation:
    now = dt.datetime.now(dt.UTC)
    return Reservation(
        id="r-1", status=status, owner="u-1", lines=(ReservationLine(sku="A", quantity=1),),
        created_at=now, updated_at=now, expires_at=now,
    )  # fmt: skip


def case(issue: PaymentIssue, paid: str = "25.00", expected: Money | None = None) -> PaymentCase:
    return PaymentCase(payment=payment(paid), issue=issue, expected=expected)


@pytest.mark.parametrize(
    ("issue", "reason"),
    [
        (PaymentIssue.RESERVATION_EXPIRED, RefundReason.LATE_PAYMENT),
        (PaymentIssue.RESERVATION_RELEASED, RefundReason.RESERVATION_CANCELLED),
        (PaymentIssue.RESERVATION_UNKNOWN, RefundReason.UNKNOWN_RESERVATION),
        (PaymentIssue.ALREADY_PAID, RefundReason.DOUBLE_PAYMENT),
    ],
)
def test_a_payment_that_cannot_confirm_is_refunded_in_full(
    issue: PaymentIssue, reason: RefundReason
) -> None:
    the_case = case(issue)
    decision = DefaultRefundPolicy().decide(the_case)
    assert (decision.action, decision.reason) == (RefundAction.REFUND_ALL, reason)
    assert "r-1" in decision.text
    assert decision.refund_amount(the_case) == Decimal("25.00")
    assert not decision.confirms(the_case)


def test_an_overpayment_confirms_and_refunds_the_difference() -> None:
    the_case = case(
        PaymentIssue.AMOUNT_MISMATCH, "25.00", Money(amount=Decimal("20"), currency="EUR")
    )
    decision = DefaultRefundPolicy().decide(the_case)
    assert (decision.action, decision.reason) == (
        RefundAction.REFUND_DIFFERENCE,
        RefundReason.OVERPAYMENT,
    )
    assert decision.confirms(the_case)
    assert decision.refund_amount(the_case) == Decimal("5.00")
    assert "expected 20 EUR" in decision.text


def test_an_underpayment_is_refunded_in_full_and_confirms_nothing() -> None:
    the_case = case(
        PaymentIssue.AMOUNT_MISMATCH, "15.00", Money(amount=Decimal("20"), currency="EUR")
    )
    decision = DefaultRefundPolicy().decide(the_case)
    assert (decision.action, decision.reason) == (
        RefundAction.REFUND_ALL,
        RefundReason.UNDERPAYMENT,
    )
    assert not decision.confirms(the_case)
    assert decision.refund_amount(the_case) == Decimal("15.00")


def test_another_currency_is_refunded_in_full() -> None:
    the_case = case(
        PaymentIssue.AMOUNT_MISMATCH, "25.00", Money(amount=Decimal("25"), currency="USD")
    )
    decision = DefaultRefundPolicy().decide(the_case)
    assert decision.reason is RefundReason.CURRENCY_MISMATCH
    assert decision.refund_amount(the_case) == Decimal("25.00")


def test_refund_difference_on_a_late_payment_means_refund_all() -> None:
    the_case = case(PaymentIssue.RESERVATION_EXPIRED)
    decision = RefundDecision(
        action=RefundAction.REFUND_DIFFERENCE, reason=RefundReason.OTHER, text="odd plugin"
    )
    assert decision.refund_amount(the_case) == Decimal("25.00")


class Goodwill:
    """Keeps late payments of loyal customers: they get their order anyway."""

    def __init__(self) -> None:
        self.asked: list[PaymentIssue] = []

    @hookimpl
    def commercekit_refund_decision(self, case: PaymentCase) -> RefundDecision | None:
        self.asked.append(case.issue)
        if case.issue is not PaymentIssue.RESERVATION_EXPIRED:
            return None
        return RefundDecision(action=RefundAction.ACCEPT, reason=RefundReason.OTHER, text="loyal")


def test_a_plugin_decision_overrides_the_default_and_none_falls_through() -> None:
    plugin = Goodwill()
    plugins = PluginManager([plugin], load_entrypoints=False)
    late = plugins.refund_decision(case(PaymentIssue.RESERVATION_EXPIRED))
    assert (late.action, late.text) == (RefundAction.ACCEPT, "loyal")
    double = PluginRefundPolicy(plugins).decide(case(PaymentIssue.ALREADY_PAID))
    assert double.reason is RefundReason.DOUBLE_PAYMENT  # the default decided
    assert plugin.asked == [PaymentIssue.RESERVATION_EXPIRED, PaymentIssue.ALREADY_PAID]


def test_without_plugins_the_default_decides() -> None:
    plugins = PluginManager(load_entrypoints=False)
    assert "commercekit-default-refund-policy" in plugins.names()
    decision = plugins.refund_decision(case(PaymentIssue.RESERVATION_EXPIRED))
    assert decision.reason is RefundReason.LATE_PAYMENT


def test_the_default_still_decides_if_it_was_unregistered() -> None:
    plugins = PluginManager(load_entrypoints=False)
    plugins.pluggy.unregister(name="commercekit-default-refund-policy")
    decision = plugins.refund_decision(case(PaymentIssue.RESERVATION_UNKNOWN))
    assert decision.reason is RefundReason.UNKNOWN_RESERVATION


def test_payment_outcome_hook_is_called_with_the_payment() -> None:
    heard: list[str] = []

    class Listener:
        @hookimpl
        def commercekit_payment_outcome(self, payment: Payment) -> None:
            heard.append(payment.id)

    PluginManager([Listener()], load_entrypoints=False).payment_outcome(payment())
    assert heard == ["p-1"]


def test_a_reservation_can_travel_with_the_case() -> None:
    the_case = PaymentCase(
        payment=payment(), issue=PaymentIssue.RESERVATION_EXPIRED,
        reservation=reservation(ReservationStatus.EXPIRED),
    )  # fmt: skip
    assert DefaultRefundPolicy().decide(the_case).action is RefundAction.REFUND_ALL
