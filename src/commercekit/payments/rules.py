"""The settlement's rules: what is wrong with a payment, and what outcome follows.

Pure functions of what `PaymentSettlement` has read (the reservation, whether
this payment holds the claim on it, the expected total) and decided (the
refund decision); it does the reading, the confirming and the recording
around them.

```python
issue = payment_issue(payment, reservation, paying=True, expected=total)
issue  # PaymentIssue.AMOUNT_MISMATCH: paid 25.00 EUR, 20.00 EUR expected
outcome_of(payment, case, decision)  # SettlementOutcome.CONFIRMED for an overpayment
```

A settlement asks them twice: `payment_issue` before confirming (the store
is the arbiter of a hold's deadline, so a payment that holds the claim is
confirmed unless its amount is wrong), and `refused_issue` when the store
refused the confirm.
"""

from __future__ import annotations

from enum import StrEnum

from commercekit.errors import ConfigurationError
from commercekit.payments.models import Money, Payment, PaymentCase, PaymentIssue, RefundDecision
from commercekit.reservations.models import Reservation, ReservationStatus

__all__ = ["SettlementOutcome", "outcome_of", "payment_issue", "refused_issue"]


class SettlementOutcome(StrEnum):
    """What settling one payment event did."""

    CONFIRMED = "CONFIRMED"
    """The reservation is confirmed by this payment (a refund of an overpayment may follow)."""
    RELEASED = "RELEASED"
    """The payment failed: the reservation was released (or had already ended)."""
    REFUNDED = "REFUNDED"
    """The payment did not confirm its reservation; it is refunded."""
    ACCEPTED = "ACCEPTED"
    """The payment has an issue, and the policy kept the money without a refund."""
    DUPLICATE = "DUPLICATE"
    """The event (or another event of this payment) was settled before: nothing was done."""


_ISSUE_OF = {
    ReservationStatus.EXPIRED: PaymentIssue.RESERVATION_EXPIRED,
    ReservationStatus.RELEASED: PaymentIssue.RESERVATION_RELEASED,
    ReservationStatus.CONFIRMED: PaymentIssue.ALREADY_PAID,
    ReservationStatus.PENDING: PaymentIssue.ALREADY_PAID,
}


def payment_issue(
    payment: Payment,
    reservation: Reservation | None,
    *,
    paying: bool,
    expected: Money | None = None,
) -> PaymentIssue | None:
    """What is wrong with a successful payment, before confirming its reservation.

    | reservation | paying | amount | issue |
    |---|---|---|---|
    | unknown (None) | | | ``RESERVATION_UNKNOWN`` |
    | EXPIRED | no | | ``RESERVATION_EXPIRED`` |
    | RELEASED | no | | ``RESERVATION_RELEASED`` |
    | PENDING or CONFIRMED | no | | ``ALREADY_PAID`` (another payment holds it) |
    | any | yes | differs from `expected` | ``AMOUNT_MISMATCH`` |
    | any | yes | `expected`, or no `expected` | None: confirm it |

    Args:
        payment: the payment.
        reservation: its reservation as read now, None when there is none.
        paying: whether this payment holds the reservation's claim (of
            several payments for one reservation, the first to claim it).
        expected: the reservation's expected total, None to accept any amount.
    """
    if reservation is None:
        return PaymentIssue.RESERVATION_UNKNOWN
    if not paying:
        return _ISSUE_OF[reservation.status]
    if expected is not None and expected != payment.money:
        return PaymentIssue.AMOUNT_MISMATCH
    return None


def refused_issue(reservation: Reservation | None, *, paying: bool) -> PaymentIssue | None:
    """What is wrong when the store refused to confirm the payment's reservation.

    | reservation as the store has it | paying | issue |
    |---|---|---|
    | gone (None) | | ``RESERVATION_UNKNOWN`` |
    | CONFIRMED | yes | None: this payment confirmed it before (a redelivery) |
    | CONFIRMED or PENDING | otherwise | ``ALREADY_PAID`` |
    | EXPIRED | | ``RESERVATION_EXPIRED`` |
    | RELEASED | | ``RESERVATION_RELEASED`` |

    Args:
        reservation: the reservation the store refused to confirm, None when it had none.
        paying: whether this payment holds the reservation's claim.
    """
    if reservation is None:
        return PaymentIssue.RESERVATION_UNKNOWN
    if reservation.status is ReservationStatus.CONFIRMED and paying:
        return None
    return _ISSUE_OF[reservation.status]


def outcome_of(
    payment: Payment,
    case: PaymentCase | None = None,
    decision: RefundDecision | None = None,
) -> SettlementOutcome:
    """The outcome of settling `payment`, given its issue (`case`) and the decision on it.

    | payment | case | decision | outcome |
    |---|---|---|---|
    | FAILED | | | ``RELEASED`` |
    | SUCCEEDED | None (nothing wrong) | | ``CONFIRMED`` |
    | SUCCEEDED | a case | confirms it (`RefundDecision.confirms`) | ``CONFIRMED`` |
    | SUCCEEDED | a case | refunds an amount | ``REFUNDED`` |
    | SUCCEEDED | a case | refunds nothing | ``ACCEPTED`` |

    ``CONFIRMED`` is also the answer to "confirm the reservation?": a
    settlement confirms exactly when this says so.

    Raises:
        ConfigurationError: a case of a successful payment without a decision.
    """
    if not payment.succeeded:
        return SettlementOutcome.RELEASED
    if case is None:
        return SettlementOutcome.CONFIRMED
    if decision is None:
        raise ConfigurationError(f"payment {payment.id} has an issue ({case.issue}): decide it")
    if decision.confirms(case):
        return SettlementOutcome.CONFIRMED
    if decision.refund_amount(case):
        return SettlementOutcome.REFUNDED
    return SettlementOutcome.ACCEPTED
