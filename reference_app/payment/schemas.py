"""Request and response bodies of the payment service (the original's JSON names)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from reference_app.common.money import MAX_AMOUNT, Amount, ShownAmount

__all__ = [
    "MAX_AMOUNT",
    "PaymentAccepted",
    "PaymentCreate",
    "PaymentPublic",
    "PaymentState",
    "RefundPublic",
    "ReservationId",
]

ReservationId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"),
]
"""A reservation id as the inventory service issues them (at most 64 characters)."""

PaymentMethod = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")
]

PaymentState = Literal["processing", "confirmed", "failed", "refunded"]
"""``processing``: charged, not settled yet; ``confirmed``: settled, the money kept;
``failed``: the charge was declined; ``refunded``: (all of) it is being or was given back."""


class PaymentCreate(BaseModel):
    """``POST /api/v1/payment``: pay `amount` for a reservation of the caller's.

    Without ``paymentMethod`` the simulated charge succeeds with probability
    ``PAYMENT_SUCCESS_RATE``; the test tokens (``tok_success``,
    ``tok_declined``, ``tok_insufficient_funds``, ``tok_error``) fix the outcome.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    reservation_id: ReservationId = Field(alias="reservationId")
    amount: Amount
    payment_method: PaymentMethod = Field(default="tok_visa", alias="paymentMethod")


class PaymentAccepted(BaseModel):
    """The 202 answer: the charge is made, its outcome arrives as events."""

    status: Literal["processing"] = "processing"
    message: str
    payment_id: str = Field(serialization_alias="paymentId")
    reservation_id: str = Field(serialization_alias="reservationId")


class RefundPublic(BaseModel):
    """A refund of one of the reservation's payments."""

    id: str
    payment_id: str = Field(serialization_alias="paymentId")
    amount: ShownAmount
    currency: str
    reason: str
    """The reason code (``LATE_PAYMENT``, ``DOUBLE_PAYMENT``...)."""
    description: str
    status: Literal["requested", "completed"]


class PaymentPublic(BaseModel):
    """``GET /api/v1/payment/{reservationId}``: the latest payment and every refund."""

    reservation_id: str = Field(serialization_alias="reservationId")
    payment_id: str = Field(serialization_alias="paymentId")
    status: PaymentState
    amount: ShownAmount
    currency: str
    failure_reason: str | None = Field(default=None, serialization_alias="failureReason")
    refunds: list[RefundPublic]
