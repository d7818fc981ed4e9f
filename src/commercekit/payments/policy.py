"""Refund policies: what a payment gets when it cannot simply confirm its reservation.

```python
policy = DefaultRefundPolicy()
decision = policy.decide(PaymentCase(payment=payment, issue=PaymentIssue.RESERVATION_EXPIRED))
decision.action  # RefundAction.REFUND_ALL: a late payment is refunded
```

To change a decision, write a plugin (it wins over the default, which is
registered ``trylast``) and give the `PluginManager` to `PaymentSettlement`:

```python
class KeepSmallOverpayments:
    @hookimpl
    def commercekit_refund_decision(self, case):
        if case.issue is PaymentIssue.AMOUNT_MISMATCH and ...:
            return RefundDecision(action=RefundAction.ACCEPT, reason=RefundReason.OTHER, text="tip")
        return None  # the next plugin, then the default, decides
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Protocol, runtime_checkable

from commercekit.payments.models import (
    PaymentCase,
    PaymentIssue,
    RefundAction,
    RefundDecision,
    RefundReason,
)
from commercekit.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from commercekit.plugins.manager import PluginManager

__all__ = ["DefaultRefundPlugin", "DefaultRefundPolicy", "PluginRefundPolicy", "RefundPolicy"]


@runtime_checkable
class RefundPolicy(Protocol):
    """Decides what a payment with an issue gets."""

    def decide(self, case: PaymentCase) -> RefundDecision:
        """The action for `case`, with a reason code and a sentence."""
        ...


class DefaultRefundPolicy:
    """The original system's rules, made explicit.

    | issue | decision |
    |---|---|
    | reservation EXPIRED | REFUND_ALL, ``LATE_PAYMENT`` |
    | reservation RELEASED | REFUND_ALL, ``RESERVATION_CANCELLED`` |
    | reservation unknown | REFUND_ALL, ``UNKNOWN_RESERVATION`` |
    | already paid by another payment | REFUND_ALL, ``DOUBLE_PAYMENT`` |
    | another currency than expected | REFUND_ALL, ``CURRENCY_MISMATCH`` |
    | more than expected | REFUND_DIFFERENCE, ``OVERPAYMENT`` (the reservation is confirmed) |
    | less than expected | REFUND_ALL, ``UNDERPAYMENT`` (the reservation stays PENDING) |
    """

    def decide(self, case: PaymentCase) -> RefundDecision:
        """See `RefundPolicy.decide`."""
        payment = case.payment
        rid = payment.reservation_id
        match case.issue:
            case PaymentIssue.RESERVATION_EXPIRED:
                return _refund_all(
                    RefundReason.LATE_PAYMENT, f"reservation {rid} expired before the payment"
                )
            case PaymentIssue.RESERVATION_RELEASED:
                return _refund_all(
                    RefundReason.RESERVATION_CANCELLED, f"reservation {rid} was cancelled"
                )
            case PaymentIssue.RESERVATION_UNKNOWN:
                return _refund_all(RefundReason.UNKNOWN_RESERVATION, f"no reservation {rid}")
            case PaymentIssue.ALREADY_PAID:
                return _refund_all(
                    RefundReason.DOUBLE_PAYMENT, f"reservation {rid} was paid by another payment"
                )
            case PaymentIssue.AMOUNT_MISMATCH:
                return _amount_mismatch(case)


def _refund_all(reason: RefundReason, text: str) -> RefundDecision:
    return RefundDecision(action=RefundAction.REFUND_ALL, reason=reason, text=text)


def _amount_mismatch(case: PaymentCase) -> RefundDecision:
    paid, expected = case.payment.money, case.expected
    if expected is None:  # nothing to compare with: treat it as an unknown total
        return _refund_all(RefundReason.OTHER, f"paid {paid}; the expected total is unknown")
    if expected.currency != paid.currency:
        return _refund_all(RefundReason.CURRENCY_MISMATCH, f"paid {paid}, expected {expected}")
    if paid.amount > expected.amount:
        return RefundDecision(
            action=RefundAction.REFUND_DIFFERENCE,
            reason=RefundReason.OVERPAYMENT,
            text=f"paid {paid}, expected {expected}: refunding {paid.amount - expected.amount}",
        )
    return _refund_all(RefundReason.UNDERPAYMENT, f"paid {paid}, expected {expected}")


class DefaultRefundPlugin:
    """`DefaultRefundPolicy` as a ``trylast`` hook implementation.

    `PluginManager` registers it under `NAME`, so a plugin's
    `commercekit_refund_decision` that returns a decision wins.
    """

    NAME: ClassVar[str] = "commercekit-default-refund-policy"

    def __init__(self, policy: RefundPolicy | None = None) -> None:
        self.policy = policy or DefaultRefundPolicy()

    @hookimpl(trylast=True)
    def commercekit_refund_decision(self, case: PaymentCase) -> RefundDecision:
        """Decide with the default policy."""
        return self.policy.decide(case)


class PluginRefundPolicy:
    """A `RefundPolicy` that asks the ``commercekit_refund_decision`` hook.

    The first plugin to return a decision wins; the default decides last.
    """

    def __init__(self, plugins: PluginManager) -> None:
        self.plugins = plugins

    def decide(self, case: PaymentCase) -> RefundDecision:
        """See `RefundPolicy.decide`."""
        return self.plugins.refund_decision(case)
