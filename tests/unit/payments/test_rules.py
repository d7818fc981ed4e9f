"""The settlement's rules, table by table: what is wrong with a payment, what outcome follows."""

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
    RefundReason,
    SettlementOutcome,
    outcome_of,
    payment_issue,
    refused_issue,
)
from commercekit.reservations import Reservation, ReservationLine, ReservationStatus

PENDING, CONFIRMED = ReservationStatus.PENDING, ReservationStatus.CONFIRMED
EXPIRED, RELEASED = ReservationStatus.EXPIRED, ReservationStatus.RELEASED


def payment(amount: str = "20.00", currency: str = "EUR", *, failed: bool = False) -> Payment:
    status = PaymentStatus.FAILED if failed else PaymentStatus.SUCCEEDED
    return Payment(
        id="p-1", reservation_id="r-1", user_id="u-1", amount=Decimal(amount),
        currency=currency, status=status,
    )  # fmt: skip


def reservation(status: ReservationStatus) -> Reservation:
    now = dt.datetime.now(dt.UTC)
    return Reservation(
        id="r-1", status=status, owner="u-1", lines=(ReservationLine(sku="A", quantity=1),),
        created_at=now, updated_at=now, expires_at=now,
    )  # fmt: skip


def eur(amount: str) -> Money:
    return Money(amount=Decimal(amount), currency="EUR")


def decision(action: RefundAction) -> RefundDecision:
    return RefundDecision(action=action, reason=RefundReason.OTHER, text="a plugin's")


# ------------------------------------------------------------- payment_issue
@pytest.mark.parametrize(
    ("status", "paying", "paid", "expected", "issue"),
    [
        # no reservation: unknown, whoever holds the claim
        (None, True, "20.00", eur("20"), PaymentIssue.RESERVATION_UNKNOWN),
        (None, False, "20.00", None, PaymentIssue.RESERVATION_UNKNOWN),
        # another payment holds the claim: the reservation's state says what is wrong
        (EXPIRED, False, "20.00", None, PaymentIssue.RESERVATION_EXPIRED),
        (RELEASED, False, "20.00", None, PaymentIssue.RESERVATION_RELEASED),
        (PENDING, False, "20.00", None, PaymentIssue.ALREADY_PAID),
        (CONFIRMED, False, "20.00", None, PaymentIssue.ALREADY_PAID),
        (PENDING, False, "25.00", eur("20"), PaymentIssue.ALREADY_PAID),  # not the amount
        # this payment holds the claim: only the amount is judged before confirming
        (PENDING, True, "20.00", eur("20"), None),
        (PENDING, True, "20.0", eur("20.00"), None),  # amounts compare as numbers
        (PENDING, True, "99.00", None, None),  # no expected total: any amount
        (PENDING, True, "25.00", eur("20"), PaymentIssue.AMOUNT_MISMATCH),
        (PENDING, True, "15.00", eur("20"), PaymentIssue.AMOUNT_MISMATCH),
        (PENDING, True, "20.00", Money(amount=Decimal(20), currency="USD"),
         PaymentIssue.AMOUNT_MISMATCH),
        (EXPIRED, True, "20.00", eur("20"), None),  # the store's confirm is the arbiter
        (CONFIRMED, True, "20.00", eur("20"), None),  # confirmed by it before a crash
        (EXPIRED, True, "15.00", eur("20"), PaymentIssue.AMOUNT_MISMATCH),
    ],
)  # fmt: skip
def test_what_is_wrong_before_confirming(
    status: ReservationStatus | None,
    paying: bool,
    paid: str,
    expected: Money | None,
    issue: PaymentIssue | None,
) -> None:
    held = None if status is None else reservation(status)
    assert payment_issue(payment(paid), held, paying=paying, expected=expected) is issue


# ------------------------------------------------------------- refused_issue
@pytest.mark.parametrize(
    ("status", "paying", "issue"),
    [
        (None, True, PaymentIssue.RESERVATION_UNKNOWN),  # gone between the read and the confirm
        (CONFIRMED, True, None),  # this payment confirmed it before: the redelivery goes on
        (CONFIRMED, False, PaymentIssue.ALREADY_PAID),
        (PENDING, True, PaymentIssue.ALREADY_PAID),
        (EXPIRED, True, PaymentIssue.RESERVATION_EXPIRED),  # the deadline passed first
        (EXPIRED, False, PaymentIssue.RESERVATION_EXPIRED),
        (RELEASED, True, PaymentIssue.RESERVATION_RELEASED),
    ],
)
def test_what_is_wrong_when_the_store_refused_to_confirm(
    status: ReservationStatus | None, paying: bool, issue: PaymentIssue | None
) -> None:
    refused = None if status is None else reservation(status)
    assert refused_issue(refused, paying=paying) is issue


# ---------------------------------------------------------------- outcome_of
def mismatch(paid: str, expected: Money | None = None) -> PaymentCase:
    return PaymentCase(
        payment=payment(paid), issue=PaymentIssue.AMOUNT_MISMATCH, expected=expected or eur("20")
    )


def late() -> PaymentCase:
    return PaymentCase(payment=payment(), issue=PaymentIssue.RESERVATION_EXPIRED)


@pytest.mark.parametrize(
    ("case", "action", "outcome"),
    [
        (None, None, SettlementOutcome.CONFIRMED),  # nothing wrong
        (late(), RefundAction.REFUND_ALL, SettlementOutcome.REFUNDED),
        (late(), RefundAction.REFUND_DIFFERENCE, SettlementOutcome.REFUNDED),  # means all
        (late(), RefundAction.ACCEPT, SettlementOutcome.ACCEPTED),  # kept, nothing to confirm
        (mismatch("25.00"), RefundAction.REFUND_DIFFERENCE, SettlementOutcome.CONFIRMED),
        (mismatch("15.00"), RefundAction.REFUND_DIFFERENCE, SettlementOutcome.REFUNDED),
        (mismatch("25.00", Money(amount=Decimal(20), currency="USD")),
         RefundAction.REFUND_DIFFERENCE, SettlementOutcome.REFUNDED),
        (mismatch("25.00"), RefundAction.REFUND_ALL, SettlementOutcome.REFUNDED),
        (mismatch("15.00"), RefundAction.ACCEPT, SettlementOutcome.CONFIRMED),
    ],
)  # fmt: skip
def test_what_outcome_follows_a_decision(
    case: PaymentCase | None, action: RefundAction | None, outcome: SettlementOutcome
) -> None:
    paid = case.payment if case else payment()
    assert outcome_of(paid, case, decision(action) if action else None) is outcome


@pytest.mark.parametrize(
    ("issue", "paid", "outcome"),
    [
        (PaymentIssue.RESERVATION_EXPIRED, "20.00", SettlementOutcome.REFUNDED),
        (PaymentIssue.RESERVATION_RELEASED, "20.00", SettlementOutcome.REFUNDED),
        (PaymentIssue.RESERVATION_UNKNOWN, "20.00", SettlementOutcome.REFUNDED),
        (PaymentIssue.ALREADY_PAID, "20.00", SettlementOutcome.REFUNDED),
        (PaymentIssue.AMOUNT_MISMATCH, "25.00", SettlementOutcome.CONFIRMED),  # and 5 back
        (PaymentIssue.AMOUNT_MISMATCH, "15.00", SettlementOutcome.REFUNDED),
    ],
)
def test_the_default_policy_gives_these_outcomes(
    issue: PaymentIssue, paid: str, outcome: SettlementOutcome
) -> None:
    case = PaymentCase(payment=payment(paid), issue=issue, expected=eur("20"))
    assert outcome_of(case.payment, case, DefaultRefundPolicy().decide(case)) is outcome


def test_a_failed_payment_releases() -> None:
    assert outcome_of(payment(failed=True)) is SettlementOutcome.RELEASED


def test_a_case_needs_its_decision() -> None:
    with pytest.raises(ConfigurationError, match="RESERVATION_EXPIRED"):
        outcome_of(payment(), late())
