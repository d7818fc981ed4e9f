"""The default refund policy, and who decides first: plugins, a policy given, the default."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from commercekit.errors import ConfigurationError
from commercekit.payments import (
    DefaultRefundPolicy,
    Money,
    Payment,
    PaymentCase,
    PaymentIssue,
    PaymentStatus,
    RefundAction,
    RefundDecision,
    RefundPolicyPlugin,
    RefundReason,
)
from commercekit.plugins import PluginManager, hookimpl
from commercekit.plugins.manager import DEFAULT_PLUGINS
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
    double = plugins.refund_decision(case(PaymentIssue.ALREADY_PAID))
    assert double.reason is RefundReason.DOUBLE_PAYMENT  # the default decided
    assert plugin.asked == [PaymentIssue.RESERVATION_EXPIRED, PaymentIssue.ALREADY_PAID]


def test_without_plugins_the_default_decides() -> None:
    plugins = PluginManager(load_entrypoints=False)
    assert plugins.names() == sorted(DEFAULT_PLUGINS)
    assert "commercekit.payments.policy" in DEFAULT_PLUGINS
    decision = plugins.refund_decision(case(PaymentIssue.RESERVATION_EXPIRED))
    assert decision.reason is RefundReason.LATE_PAYMENT


def test_the_default_still_decides_if_it_was_unregistered() -> None:
    plugins = PluginManager(load_entrypoints=False)
    plugins.pluggy.unregister(name="commercekit.payments.policy")
    decision = plugins.refund_decision(case(PaymentIssue.RESERVATION_UNKNOWN))
    assert decision.reason is RefundReason.UNKNOWN_RESERVATION


class RefundWithANote:
    """A shop's own policy object: refunds everything, saying so."""

    def decide(self, case: PaymentCase) -> RefundDecision:
        return RefundDecision(
            action=RefundAction.REFUND_ALL, reason=RefundReason.OTHER, text="the shop's policy"
        )


class Lenient:
    """A plugin that keeps double payments."""

    @hookimpl
    def commercekit_refund_decision(self, case: PaymentCase) -> RefundDecision | None:
        if case.issue is not PaymentIssue.ALREADY_PAID:
            return None
        return RefundDecision(action=RefundAction.ACCEPT, reason=RefundReason.OTHER, text="kept")


def test_plugins_decide_first_then_the_policy_then_the_default() -> None:
    plugins = PluginManager([Goodwill()], load_entrypoints=False)
    plugins.register_refund_policy(RefundWithANote())
    plugins.register(Lenient())  # registered after the policy: still before it
    assert plugins.refund_decision(case(PaymentIssue.RESERVATION_EXPIRED)).text == "loyal"
    assert plugins.refund_decision(case(PaymentIssue.ALREADY_PAID)).text == "kept"
    unknown = plugins.refund_decision(case(PaymentIssue.RESERVATION_UNKNOWN))
    assert unknown.text == "the shop's policy"
    assert RefundPolicyPlugin.NAME in plugins.names()

    plugins.pluggy.unregister(name=RefundPolicyPlugin.NAME)  # then the default again
    default = plugins.refund_decision(case(PaymentIssue.RESERVATION_UNKNOWN))
    assert default.reason is RefundReason.UNKNOWN_RESERVATION


def test_one_manager_has_one_refund_policy() -> None:
    plugins = PluginManager(load_entrypoints=False)
    policy = RefundWithANote()
    plugins.register_refund_policy(policy)
    plugins.register_refund_policy(policy)  # the same policy again: nothing changes
    assert plugins.names().count(RefundPolicyPlugin.NAME) == 1
    with pytest.raises(ConfigurationError, match="its own PluginManager"):
        plugins.register_refund_policy(RefundWithANote())
    assert plugins.refund_decision(case(PaymentIssue.ALREADY_PAID)).text == "the shop's policy"


def test_a_policy_does_not_bring_back_an_unregistered_default() -> None:
    plugins = PluginManager(load_entrypoints=False)
    plugins.pluggy.unregister(name="commercekit.payments.policy")
    plugins.register_refund_policy(RefundWithANote())
    assert plugins.names() == [RefundPolicyPlugin.NAME]


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
