"""`PaymentService`: charge through a processor, record it, announce it, once per key.

```python
payments = PaymentService(sessions, SimulatedProcessor(success_rate=0.8))
payment = await payments.pay(intent)  # payment.confirmed or payment.failed is in the outbox
```

The payment is recorded in ``commercekit_payments`` (UNIQUE on the
idempotency key) with its ``payment.confirmed`` / ``payment.failed`` event in
the transactional outbox, in one transaction. A retry with the same key and
body returns the recorded payment; with another body it raises
`PaymentConflict`. Two concurrent calls with one key both reach the
processor, which charges once (its own idempotency by key), and one row and
one event are written.

**The deadline is judged when the charge is accepted.** Give the service
the reservation store (``reservations=``) and each charge first *pins* its
hold: a PENDING reservation's deadline is moved to at least
``payment_hold`` from now (`ReservationStore.extend`, atomic in the store,
so the deadline is judged once, on the store's clock). A charge pinned
before the deadline is then settled against a hold that is still there,
however late its event arrives (within ``payment_hold``): it confirms the
reservation and is never refunded as late. A reservation that had expired,
was cancelled or paid is charged all the same, and the settlement refunds
that payment. When the store cannot be reached, nothing is charged
(`BackendUnavailable`).

```python
payments = PaymentService(sessions, processor, reservations=durable, payment_hold=900)
```
"""

from __future__ import annotations

import datetime as dt
import logging

from commercekit.errors import (
    ConfigurationError,
    InvalidTransition,
    MissingExtraError,
    PaymentConflict,
    ReservationNotFound,
)
from commercekit.events.catalog import PaymentConfirmed, PaymentFailed
from commercekit.events.envelope import Envelope
from commercekit.payments.models import Payment, PaymentIntent, PaymentStatus
from commercekit.payments.processor import PaymentProcessor
from commercekit.reservations.models import Reservation, ReservationStatus
from commercekit.reservations.store import ReservationStore, TTLInput

try:
    from sqlalchemy import select
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from commercekit.events.outbox import Outbox
    from commercekit.payments._tables import PaymentRow
    from commercekit.sql import insert_or_ignore
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtraError("postgres", __name__) from exc

__all__ = ["PaymentService"]

log = logging.getLogger("commercekit.payments")

DEFAULT_PAYMENT_HOLD = dt.timedelta(minutes=15)
"""How long a pinned hold lasts at least, from the charge (see the module docs)."""


def to_payment(row: PaymentRow) -> Payment:
    """The `Payment` a ``commercekit_payments`` row records."""
    return Payment(
        id=row.id,
        reservation_id=row.reservation_id,
        user_id=row.user_id,
        amount=row.amount,
        currency=row.currency,
        status=PaymentStatus(row.status),
        idempotency_key=row.idempotency_key,
        failure_code=row.failure_code,
        failure_message=row.failure_message,
        created_at=row.created_at,
    )


class PaymentService:
    """Charges payment intents and announces their outcome through the outbox.

    Args:
        sessions: makes the database sessions.
        processor: charges the intents.
        outbox: where the payment events are written.
        source: the events' CloudEvents ``source``.
        reservations: the reservation store whose holds a charge pins
            (`pin`); without it the deadline is judged at settlement.
        payment_hold: how long, at least, a pinned hold lasts from the
            charge: longer than the settlement may take (a Kafka outage
            included). ``timedelta`` or seconds.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        processor: PaymentProcessor,
        *,
        outbox: Outbox | None = None,
        source: str = "payments",
        reservations: ReservationStore | None = None,
        payment_hold: TTLInput = DEFAULT_PAYMENT_HOLD,
    ) -> None:
        self.sessions = sessions
        self.processor = processor
        self.outbox = outbox or Outbox()
        self.source = source
        self.reservations = reservations
        if not isinstance(payment_hold, dt.timedelta):
            payment_hold = dt.timedelta(seconds=payment_hold)
        if payment_hold <= dt.timedelta(0):
            raise ConfigurationError(f"payment_hold must be positive, got {payment_hold}")
        self.payment_hold = payment_hold

    async def pin(self, reservation_id: str) -> Reservation | None:
        """Keep a PENDING hold for at least `payment_hold` from now; return the reservation.

        The deadline is moved only forward, by the store's atomic
        `ReservationStore.extend`, which judges the deadline atomically on
        the store's clock: a hold past its deadline is not pinned (a charge
        made now is a late payment, refunded at settlement). A reservation
        that has ended is returned as it is; an unknown one is None.
        Without `reservations`, None.

        Raises:
            BackendUnavailable: the store cannot be reached; charge nothing.
        """
        if self.reservations is None:
            return None
        try:
            hold = await self.reservations.get(reservation_id)
            if hold.status is not ReservationStatus.PENDING:
                return hold
            left = hold.expires_at - dt.datetime.now(dt.UTC)
            # Past its deadline (late: the sweeper expires it), or held long
            # enough already (a hold is never shortened): leave it.
            if not dt.timedelta(0) < left < self.payment_hold:
                return hold
            # The store judges the deadline again, atomically, on its own clock.
            return await self.reservations.extend(reservation_id, self.payment_hold)
        except ReservationNotFound:
            return None
        except InvalidTransition as exc:  # ended meanwhile, or expired by this very call
            log.info(
                "reservation %s is %s: its payment will be refunded",
                reservation_id,
                exc.reservation.status.value,
            )
            return exc.reservation

    async def get(self, idempotency_key: str) -> Payment | None:
        """The payment recorded for an idempotency key, if any."""
        async with self.sessions() as session:
            row = await session.scalar(
                select(PaymentRow).where(PaymentRow.idempotency_key == idempotency_key)
            )
            return None if row is None else to_payment(row)

    async def for_reservation(self, reservation_id: str) -> list[Payment]:
        """Every payment recorded for a reservation, oldest first (FAILED ones included)."""
        async with self.sessions() as session:
            rows = await session.scalars(
                select(PaymentRow)
                .where(PaymentRow.reservation_id == reservation_id)
                .order_by(PaymentRow.created_at, PaymentRow.id)
            )
            return [to_payment(row) for row in rows]

    async def pay(self, intent: PaymentIntent, *, correlation_id: str | None = None) -> Payment:
        """Charge `intent` once per idempotency key; return the payment (SUCCEEDED or FAILED).

        `correlation_id` (the request's id, say) goes into the payment's
        event; a replay returns the recorded payment and writes no event.

        With `reservations`, the reservation's hold is pinned (`pin`) before
        the charge.

        Raises:
            PaymentConflict: the key was used with another body; nothing was charged.
            ProcessorUnavailable: the processor failed; retry with the same key.
            BackendUnavailable: the reservation store cannot be reached; nothing
                was charged.
        """
        fingerprint = intent.fingerprint()
        async with self.sessions() as session:
            known = await session.scalar(
                select(PaymentRow).where(PaymentRow.idempotency_key == intent.idempotency_key)
            )
            if known is not None:
                if known.fingerprint != fingerprint:
                    raise PaymentConflict(intent.idempotency_key)
                return to_payment(known)
        await self.pin(intent.reservation_id)
        payment = await self.processor.charge(intent)
        async with self.sessions() as session, session.begin():
            values = {
                "id": payment.id,
                "idempotency_key": intent.idempotency_key,
                "fingerprint": fingerprint,
                "reservation_id": payment.reservation_id,
                "user_id": payment.user_id,
                "amount": payment.amount,
                "currency": payment.currency,
                "status": payment.status.value,
                "failure_code": payment.failure_code,
                "failure_message": payment.failure_message,
                "created_at": payment.created_at,
            }
            statement = insert_or_ignore(session.get_bind().dialect.name, PaymentRow, values)
            inserted = (await session.execute(statement.returning(PaymentRow.id))).first()
            if inserted is None:  # a concurrent call with the same key recorded it
                row = await session.scalar(
                    select(PaymentRow).where(PaymentRow.idempotency_key == intent.idempotency_key)
                )
                assert row is not None
                if row.fingerprint != fingerprint:
                    raise PaymentConflict(intent.idempotency_key)
                return to_payment(row)
            await self.outbox.add(
                session,
                outcome_event(payment, source=self.source, correlation_id=correlation_id),
            )
        return payment


def outcome_event(
    payment: Payment, *, source: str, correlation_id: str | None
) -> Envelope[PaymentConfirmed | PaymentFailed]:
    """The ``payment.confirmed`` / ``payment.failed`` event of a payment (id ``payment:<id>``)."""
    payload: PaymentConfirmed | PaymentFailed
    if payment.succeeded:
        payload = PaymentConfirmed(
            payment_id=payment.id,
            reservation_id=payment.reservation_id,
            user_id=payment.user_id,
            amount=payment.amount,
            currency=payment.currency,
        )
    else:
        reason = payment.failure_message or payment.failure_code or "payment failed"
        payload = PaymentFailed(
            payment_id=payment.id,
            reservation_id=payment.reservation_id,
            user_id=payment.user_id,
            amount=payment.amount,
            currency=payment.currency,
            reason=reason[:500],
        )
    return Envelope.wrap(
        payload, source=source, id=f"payment:{payment.id}", correlation_id=correlation_id
    )
