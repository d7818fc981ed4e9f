"""The payment domain: money, intents, payments, refunds and refund decisions.

Money is a `Decimal` with an ISO 4217 currency, never a float. Amounts are
compared as numbers (``Decimal("12.5") == Decimal("12.50")``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from commercekit.errors import InvalidRequest, PaymentDeclined
from commercekit.events.catalog import Amount, Currency, Identifier
from commercekit.events.envelope import Envelope
from commercekit.reservations.models import Reservation

__all__ = [
    "Amount",
    "Currency",
    "Money",
    "Payment",
    "PaymentCase",
    "PaymentIntent",
    "PaymentIssue",
    "PaymentStatus",
    "ProcessorRefund",
    "Refund",
    "RefundAction",
    "RefundDecision",
    "RefundReason",
    "RefundStatus",
]


def _positive(value: Decimal) -> Decimal:
    if value <= 0:
        raise ValueError("a payment amount is greater than zero")
    return value


PositiveAmount = Annotated[Amount, AfterValidator(_positive)]
"""An `Amount` greater than zero."""


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Money(BaseModel):
    """An amount in a currency: ``Money(amount=Decimal("12.50"), currency="EUR")``."""

    model_config = ConfigDict(frozen=True)

    amount: Amount
    currency: Currency

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"


# ---------------------------------------------------------------- payments


class PaymentStatus(StrEnum):
    """The outcome of a charge."""

    SUCCEEDED = "SUCCEEDED"
    """The money was taken (a ``payment.confirmed`` event)."""
    FAILED = "FAILED"
    """The processor refused it (a ``payment.failed`` event); nothing was taken."""


class PaymentIntent(BaseModel):
    """A request to charge `amount` for a reservation, keyed by an idempotency key.

    The same key with the same body gives the same payment; the same key with
    another body is a `commercekit.errors.PaymentConflict`, never a second charge.

    Attributes:
        idempotency_key: chosen by the client, one per intended payment.
        reservation_id: what is paid for.
        user_id: who pays.
        amount: how much, greater than zero.
        currency: in which currency.
        payment_method: a processor token (``"tok_success"`` with `SimulatedProcessor`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    idempotency_key: Identifier
    reservation_id: Identifier
    user_id: Identifier
    amount: PositiveAmount
    currency: Currency
    payment_method: Identifier = "tok_visa"

    def fingerprint(self) -> str:
        """A digest of the body (everything but the key); equal bodies, equal digests."""
        body = self.model_dump(mode="json", exclude={"idempotency_key"})
        body["amount"] = str(self.amount.normalize())
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class Payment(BaseModel):
    """A charge as the processor answered it: SUCCEEDED or FAILED."""

    model_config = ConfigDict(frozen=True)

    id: Identifier
    reservation_id: Identifier
    user_id: Identifier
    amount: Amount
    currency: Currency
    status: PaymentStatus
    idempotency_key: str | None = None
    failure_code: str | None = None
    """Why it failed, machine-readable (``"card_declined"``, ``"insufficient_funds"``)."""
    failure_message: str | None = None
    created_at: dt.datetime = Field(default_factory=_utcnow)

    @property
    def money(self) -> Money:
        """The amount and its currency."""
        return Money(amount=self.amount, currency=self.currency)

    @property
    def succeeded(self) -> bool:
        """Whether the money was taken."""
        return self.status is PaymentStatus.SUCCEEDED

    def raise_for_status(self) -> Payment:
        """Return the payment if it succeeded.

        Raises:
            PaymentDeclined: it failed.
        """
        if not self.succeeded:
            raise PaymentDeclined(self)
        return self

    @classmethod
    def from_event(cls, event: Envelope[Any]) -> Payment:
        """The payment a ``payment.confirmed`` or ``payment.failed`` event announces.

        Raises:
            InvalidRequest: the event is of another type.
        """
        if event.type == "payment.confirmed":
            status, reason = PaymentStatus.SUCCEEDED, None
        elif event.type == "payment.failed":
            status, reason = PaymentStatus.FAILED, event.data.reason
        else:
            raise InvalidRequest(f"not a payment event: {event.type}")
        data = event.data
        return cls(
            id=data.payment_id,
            reservation_id=data.reservation_id,
            user_id=data.user_id,
            amount=data.amount,
            currency=data.currency,
            status=status,
            failure_code=reason,
            failure_message=reason,
            created_at=event.time,
        )


# ---------------------------------------------------------------- refund decisions


class PaymentIssue(StrEnum):
    """Why a payment cannot simply confirm its reservation."""

    RESERVATION_EXPIRED = "RESERVATION_EXPIRED"
    """The hold's deadline passed before the payment arrived (a late, "zombie" payment)."""
    RESERVATION_RELEASED = "RESERVATION_RELEASED"
    """The reservation was cancelled."""
    RESERVATION_UNKNOWN = "RESERVATION_UNKNOWN"
    """No reservation has this id."""
    ALREADY_PAID = "ALREADY_PAID"
    """Another payment confirmed (or is confirming) the reservation: a double payment."""
    AMOUNT_MISMATCH = "AMOUNT_MISMATCH"
    """The amount (or currency) differs from the reservation's expected total."""


class RefundAction(StrEnum):
    """What to do with a payment that has an issue."""

    REFUND_ALL = "REFUND_ALL"
    """Refund the whole payment; the reservation is not confirmed by it."""
    REFUND_DIFFERENCE = "REFUND_DIFFERENCE"
    """Overpaid: confirm the reservation and refund what exceeds the expected total.

    For any other case (an underpayment, an expired hold...) it means REFUND_ALL.
    """
    ACCEPT = "ACCEPT"
    """Keep the money, refund nothing; for an amount mismatch, confirm the reservation."""
    REFUND_LINES = "REFUND_LINES"
    """Refund what was paid for some units of an order (cancelled or returned ones).

    Recorded with the refunds an `commercekit.orders.OrderBook` asks for; a
    refund policy has no use for it (for a payment case it means REFUND_ALL).
    """


class RefundReason(StrEnum):
    """The reason recorded with a refund decision (and sent in ``refund.requested``)."""

    LATE_PAYMENT = "LATE_PAYMENT"
    RESERVATION_CANCELLED = "RESERVATION_CANCELLED"
    UNKNOWN_RESERVATION = "UNKNOWN_RESERVATION"
    DOUBLE_PAYMENT = "DOUBLE_PAYMENT"
    OVERPAYMENT = "OVERPAYMENT"
    UNDERPAYMENT = "UNDERPAYMENT"
    CURRENCY_MISMATCH = "CURRENCY_MISMATCH"
    ORDER_CANCELLED = "ORDER_CANCELLED"
    """Units of the order were cancelled before they shipped."""
    ORDER_RETURNED = "ORDER_RETURNED"
    """Shipped units of the order came back."""
    MANUAL = "MANUAL"
    """Asked for by a person or a script, not by the settlement."""
    OTHER = "OTHER"
    """A plugin's own reason; `RefundDecision.text` says which."""


class PaymentCase(BaseModel):
    """What a refund policy is asked about: a payment and what is wrong with it.

    Attributes:
        payment: the (SUCCEEDED) payment.
        issue: what is wrong.
        reservation: the reservation as it is now (None when unknown).
        expected: the reservation's expected total, when the caller knows it.
    """

    model_config = ConfigDict(frozen=True)

    payment: Payment
    issue: PaymentIssue
    reservation: Reservation | None = None
    expected: Money | None = None


class RefundDecision(BaseModel):
    """A policy's answer: an action, a reason code and a sentence for people."""

    model_config = ConfigDict(frozen=True)

    action: RefundAction
    reason: RefundReason
    text: str = Field(min_length=1, max_length=500)

    def refund_amount(self, case: PaymentCase) -> Decimal:
        """How much this decision refunds of `case.payment` (0 to accept)."""
        paid = case.payment.amount
        if self.action is RefundAction.ACCEPT:
            return Decimal(0)
        if self.action is RefundAction.REFUND_DIFFERENCE and self.confirms(case):
            assert case.expected is not None  # confirms() checked it
            return paid - case.expected.amount
        return paid

    def confirms(self, case: PaymentCase) -> bool:
        """Whether the payment should confirm its reservation under this decision."""
        if case.issue is not PaymentIssue.AMOUNT_MISMATCH:
            return False  # expired, released, unknown or paid: nothing left to confirm
        if self.action is RefundAction.ACCEPT:
            return True
        expected = case.expected
        return (
            self.action is RefundAction.REFUND_DIFFERENCE
            and expected is not None
            and expected.currency == case.payment.currency
            and case.payment.amount > expected.amount
        )


# ---------------------------------------------------------------- refunds


class RefundStatus(StrEnum):
    """Where a refund is: recorded, then made by the processor."""

    REQUESTED = "REQUESTED"
    """Recorded (``refund.requested`` sent); the processor has not confirmed it yet."""
    COMPLETED = "COMPLETED"
    """The processor made it (``refund.completed`` sent)."""


class ProcessorRefund(BaseModel):
    """The processor's receipt for a refund."""

    model_config = ConfigDict(frozen=True)

    id: Identifier
    payment_id: Identifier
    amount: Amount
    currency: Currency
    idempotency_key: str


class Refund(BaseModel):
    """A refund of (part of) one payment.

    A payment has at most one refund per key (`RefundService.request`), and
    its refunds never add up to more than was paid.
    """

    model_config = ConfigDict(frozen=True)

    id: Identifier
    payment_id: Identifier
    reservation_id: Identifier
    user_id: Identifier
    amount: Amount
    currency: Currency
    action: RefundAction
    reason: RefundReason
    text: str
    status: RefundStatus
    idempotency_key: str
    processor_refund_id: str | None = None
    last_error: str | None = None
    requested_at: dt.datetime
    completed_at: dt.datetime | None = None
