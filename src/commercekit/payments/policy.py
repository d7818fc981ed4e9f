"""Refund policies: what a payment gets when it cannot simply confirm its reservation.

```python
policy = DefaultRefundPolicy()
decision = policy.decide(PaymentCase(payment=payment, issue=PaymentIssue.RESERVATION_EXPIRED))
decision.action  # RefundAction.REFUND_ALL: a late payment is refunded
```

`PaymentSettlement` asks the ``commercekit_refund_decision`` hook about
every case, and the first answer wins, in this order:

1. your plugins (the last registered first), registered in the
   `PluginManager` you give the settlement;
2. the `RefundPolicy` you give as ``policy=`` (the settlement registers it
   as a `RefundPolicyPlugin`);
3. `DefaultRefundPolicy`, registered ``trylast`` by every `PluginManager`
   from this module's `commercekit_refund_decision` (see
   `commercekit.plugins.manager.DEFAULT_PLUGINS`).

To change a decision, write a plugin and return None for the cases you
leave to the rest:

```python
class KeepSmallOverpayments:
    @hookimpl
    def commercekit_refund_decision(self, case):
        if case.issue is PaymentIssue.AMOUNT_MISMATCH and ...:
            return RefundDecision(action=RefundAction.ACCEPT, reason=RefundReason.OTHER, text="tip")
        return None  # the next plugin, the policy, then the default decides
```
"""

from __future__ import annotations

from typing import ClassVar, Protocol, runtime_checkable

from commercekit.payments.models import (
    PaymentCase,
    PaymentIssue,
    RefundAction,
    RefundDecision,
    RefundReason,
)
from commercekit.plugins.hookspecs import hookimpl

__all__ = ["DefaultRefundPolicy", "RefundPolicy", "RefundPolicyPlugin"]


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


@hookimpl(trylast=True)
def commercekit_refund_decision(case: PaymentCase) -> RefundDecision:
    """Decide as `DefaultRefundPolicy` does: the default, asked last.

    `PluginManager` registers this module (it is in
    `commercekit.plugins.manager.DEFAULT_PLUGINS`), ``trylast``: every
    plugin, and a settlement's own policy, decide before it.
    """
    return _DEFAULT.decide(case)


_DEFAULT = DefaultRefundPolicy()


class RefundPolicyPlugin:
    """A `RefundPolicy` as a ``commercekit_refund_decision`` hook implementation.

    `PaymentSettlement` registers its ``policy=`` this way, with
    `PluginManager.register_refund_policy`, under `NAME`: ``trylast``, and
    ahead of commercekit's default. Your plugins decide before it.

    Args:
        policy: decides every case it is asked about.
    """

    NAME: ClassVar[str] = "commercekit-refund-policy"

    def __init__(self, policy: RefundPolicy) -> None:
        self.policy = policy

    @hookimpl(trylast=True)
    def commercekit_refund_decision(self, case: PaymentCase) -> RefundDecision:
        """Decide with the policy."""
        return self.policy.decide(case)
