"""``/api/v1/payment``: pay for a reservation, read a reservation's payment and refunds."""

from __future__ import annotations

import logging
import uuid
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Path

from commercekit.errors import PaymentConflict, ProcessorUnavailable
from commercekit.payments import (
    Payment,
    PaymentIntent,
    Refund,
    RefundStatus,
    SettlementOutcome,
    settlement_outcomes,
)
from commercekit.reservations import Reservation, ReservationLedger
from reference_app.common import ApiError, CurrentUser, request_id
from reference_app.common.errors import errors
from reference_app.common.identity import (
    IDEMPOTENCY_HEADER,
    IDEMPOTENCY_KEY_PATTERN,
    MAX_IDEMPOTENCY_KEY,
    scoped_key,
)
from reference_app.payment.deps import (
    LedgerDep,
    MetricsDep,
    PaymentsDep,
    RefundsDep,
    ServicesDep,
    SettingsDep,
)
from reference_app.payment.schemas import (
    PaymentAccepted,
    PaymentCreate,
    PaymentPublic,
    PaymentState,
    RefundPublic,
)

__all__ = ["IDEMPOTENCY_HEADER", "payment_state", "router"]


log = logging.getLogger("reference_app.payment")
router = APIRouter(prefix="/api/v1/payment", tags=["payment"], responses=errors(400, 422))

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=IDEMPOTENCY_HEADER,
        min_length=1,
        max_length=MAX_IDEMPOTENCY_KEY,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="One per intended payment: a retry with it is answered, not charged again.",
    ),
]
ReservationPath = Annotated[
    str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
]

_NOT_FOUND = "reservation not found"


async def _owned(ledger: ReservationLedger, reservation_id: str, user_id: str) -> Reservation:
    """The caller's reservation; 404 alike whether it is unknown or someone else's."""
    reservation = await ledger.get(reservation_id)
    if reservation is None or reservation.owner != user_id:
        raise ApiError(404, _NOT_FOUND, code="reservation_not_found")
    return reservation


def _intent_key(user_id: str, key: str | None) -> str:
    """The processor's idempotency key: the client's, scoped to the caller, or a fresh one."""
    return f"pay:{uuid.uuid4()}" if key is None else scoped_key(user_id, key)


@router.post(
    "",
    status_code=202,
    responses=errors(
        401,
        404,
        409,
        503,
        s404="no such reservation of the caller's",
        s409="the Idempotency-Key was used with another body",
        s503="the processor failed; retry (with the same key)",
    ),
)
async def create_payment(
    body: PaymentCreate,
    user: CurrentUser,
    *,
    payments: PaymentsDep,
    ledger: LedgerDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    idempotency_key: IdempotencyKey = None,
) -> PaymentAccepted:
    """Charge the reservation's payment; the outcome follows as ``payment.*`` events.

    A reservation that expired or was cancelled is charged all the same: the
    inventory side refunds such a late payment.
    """
    await _owned(ledger, body.reservation_id, user.user_id)
    intent = PaymentIntent(
        idempotency_key=_intent_key(user.user_id, idempotency_key),
        reservation_id=body.reservation_id,
        user_id=user.user_id,
        amount=body.amount,
        currency=settings.currency,
        payment_method=body.payment_method,
    )
    replay = idempotency_key is not None and await payments.get(intent.idempotency_key) is not None
    try:
        payment = await payments.pay(intent, correlation_id=request_id())
    except PaymentConflict:
        metrics.payments.labels("conflict").inc()
        raise ApiError(
            409,
            f"this {IDEMPOTENCY_HEADER} was used with another request",
            code="idempotency_conflict",
        ) from None
    except ProcessorUnavailable:
        metrics.payments.labels("unavailable").inc()
        raise  # 503: nothing was charged, a retry with the same key is safe
    outcome = "replayed" if replay else ("succeeded" if payment.succeeded else "failed")
    metrics.payments.labels(outcome).inc()
    log.info(
        "payment %s",
        outcome,
        extra={
            "payment_id": payment.id,
            "reservation_id": payment.reservation_id,
            "user_id": user.user_id,
        },
    )
    return PaymentAccepted(
        message="payment is being processed",
        payment_id=payment.id,
        reservation_id=payment.reservation_id,
    )


def payment_state(
    payment: Payment, outcome: SettlementOutcome | None, refunded: Decimal
) -> PaymentState:
    """What ``GET`` says of a payment, from its charge, its settlement and its refunds.

    A refund makes it ``refunded``, except on a payment that confirmed its
    reservation, where only refunds of all of it do: refunds of a part (an
    overpayment's difference, cancelled units) leave it ``confirmed``, and
    are listed.
    """
    if not payment.succeeded:
        return "failed"
    if refunded and not (outcome is SettlementOutcome.CONFIRMED and refunded < payment.amount):
        return "refunded"
    if outcome in (SettlementOutcome.CONFIRMED, SettlementOutcome.ACCEPTED):
        return "confirmed"
    if outcome is SettlementOutcome.REFUNDED:
        return "refunded"
    return "processing"


def _refund_public(refund: Refund) -> RefundPublic:
    status: Literal["requested", "completed"] = (
        "completed" if refund.status is RefundStatus.COMPLETED else "requested"
    )
    return RefundPublic(
        id=refund.id,
        payment_id=refund.payment_id,
        amount=refund.amount,
        currency=refund.currency,
        reason=refund.reason.value,
        description=refund.text,
        status=status,
    )


@router.get("/{reservation_id}", responses=errors(401, 404, s404="no payment to show"))
async def get_payment(
    reservation_id: ReservationPath,
    user: CurrentUser,
    *,
    services: ServicesDep,
    payments: PaymentsDep,
    refunds: RefundsDep,
    ledger: LedgerDep,
) -> PaymentPublic:
    """The reservation's payment, its status, and the refunds of all its payments.

    The payment shown is the one that paid the reservation, once one has;
    before that, the latest still being settled; else the latest. So a paid
    order reads as paid, whatever was tried after it (a declined retry, a
    double payment being refunded).
    """
    await _owned(ledger, reservation_id, user.user_id)
    history = await payments.for_reservation(reservation_id)
    if not history:
        raise ApiError(404, "no payment for this reservation", code="payment_not_found")
    # The outcomes first: a settlement commits its refund in the same transaction,
    # so once an outcome is seen, the refunds read next include its refund.
    outcomes = await settlement_outcomes(services.sessions, reservation_id)
    found = await refunds.for_reservation(reservation_id)
    shown = _shown(history, outcomes)
    outcome = outcomes.get(shown.id)
    refunded = sum((r.amount for r in found if r.payment_id == shown.id), start=Decimal(0))
    return PaymentPublic(
        reservation_id=reservation_id,
        payment_id=shown.id,
        status=payment_state(shown, outcome, refunded),
        amount=shown.amount,
        currency=shown.currency,
        failure_reason=shown.failure_message if not shown.succeeded else None,
        refunds=[_refund_public(r) for r in found],
    )


def _shown(history: list[Payment], outcomes: dict[str, SettlementOutcome]) -> Payment:
    """Of a reservation's payments (oldest first), the one that says how it stands."""
    paid = [p for p in history if outcomes.get(p.id) is SettlementOutcome.CONFIRMED]
    settling = [p for p in history if p.succeeded and p.id not in outcomes]
    return (paid or settling or history)[-1]
