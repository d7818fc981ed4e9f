"""`RefundService`: a payment's refunds, once per key and never more than was paid.

```python
refunds = RefundService(sessions, processor)
refund = await refunds.refund(payment, decision=decision)  # record, then pay out
await refunds.refund(payment, decision=decision)           # a no-op: the same refund
await refunds.refund(payment, amount=Decimal("5"), key="cancel:c-1")  # a second, partial one
```

A refund is two steps:

1. **request**: a row in ``commercekit_refunds`` (UNIQUE on the payment and
   the refund's key) and a ``refund.requested`` event in the transactional
   outbox, in one transaction (yours, with `request`, or its own). A second
   request for the payment under the same key inserts nothing and returns
   the first refund. Each refund adds its amount to the payment's total in
   ``commercekit_refund_totals``, with one update that refuses to go past
   what was paid (`OverRefund`), under the total's row lock: retried,
   redelivered or concurrent, a payment's refunds never exceed it.
2. **complete**: under the row's lock, the processor is asked to refund with
   the refund's idempotency key, then the row is marked COMPLETED and a
   ``refund.completed`` event is written, in the same transaction. A
   concurrent `complete` waits for the lock and finds the refund done, so
   the processor is called once; if this process dies after the processor
   answered and before the commit, the retry calls it again with the same
   key, and the processor returns the same refund.

A refund the processor refused stays REQUESTED with its `last_error`;
`retry_pending` (from a scheduler) completes those.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from decimal import Decimal
from typing import Any

from commercekit.errors import (
    ConfigurationError,
    InvalidRequest,
    MissingExtraError,
    OverRefund,
    RefundError,
)
from commercekit.events.catalog import RefundCompleted, RefundRequested
from commercekit.events.envelope import Envelope
from commercekit.payments.amounts import in_units
from commercekit.payments.models import (
    Payment,
    PaymentStatus,
    Refund,
    RefundAction,
    RefundDecision,
    RefundReason,
    RefundStatus,
)
from commercekit.payments.processor import PaymentProcessor

try:
    from sqlalchemy import ColumnElement, select, update
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

    from commercekit.events.outbox import Outbox
    from commercekit.payments._tables import RefundRow, RefundTotalRow
    from commercekit.sql import dialect_of, insert_or_ignore
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtraError("postgres", __name__) from exc

_REFUNDS = RefundRow.__table__
_TOTALS = RefundTotalRow.__table__

__all__ = ["RefundService", "refund_key"]

log = logging.getLogger("commercekit.payments")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def refund_key(payment_id: str, key: str | None = None) -> str:
    """The idempotency key of a payment's refund under `key` (None: its settlement's)."""
    return f"refund:{payment_id}" if key is None else f"refund:{payment_id}:{key}"


def _to_refund(row: Any) -> Refund:
    return Refund(
        id=row.id,
        payment_id=row.payment_id,
        reservation_id=row.reservation_id,
        user_id=row.user_id,
        amount=in_units(row.amount, row.currency),
        currency=row.currency,
        action=RefundAction(row.action),
        reason=RefundReason(row.reason),
        text=row.text,
        status=RefundStatus(row.status),
        idempotency_key=row.idempotency_key,
        processor_refund_id=row.processor_refund_id,
        last_error=row.last_error,
        requested_at=row.requested_at,
        completed_at=row.completed_at,
    )


def _payment_of(row: Any) -> Payment:
    return Payment(
        id=row.payment_id,
        reservation_id=row.reservation_id,
        user_id=row.user_id,
        amount=in_units(row.payment_amount, row.currency),
        currency=row.currency,
        status=PaymentStatus.SUCCEEDED,
    )


async def _locked_total(
    session: AsyncSession | AsyncConnection, dialect: str, payment: Payment
) -> tuple[Decimal, Decimal]:
    """What `payment` paid and its refunds total, its row locked (made first if new)."""
    total = {"payment_id": payment.id, "paid": payment.amount, "refunded": Decimal(0)}
    await session.execute(insert_or_ignore(dialect, RefundTotalRow, total))
    paid, refunded = (
        await session.execute(
            select(_TOTALS.c.paid, _TOTALS.c.refunded)
            .where(_TOTALS.c.payment_id == payment.id)
            .with_for_update()  # PostgreSQL; SQLite holds the write lock already
        )
    ).one()
    return paid, refunded


_MANUAL = RefundDecision(
    action=RefundAction.REFUND_ALL, reason=RefundReason.MANUAL, text="refund requested"
)


class RefundService:
    """Records refunds, makes them through the processor once, and announces them.

    Args:
        sessions: makes the database sessions (``commercekit_refunds`` and
            ``commercekit_outbox`` must exist: `commercekit.sql.migrate`).
        processor: makes the refunds. Without one the service only records
            them (`request`, and `refund` leaves them REQUESTED): another
            process, holding the processor, completes them, for instance on
            each ``refund.requested`` event.
        outbox: where ``refund.requested`` / ``refund.completed`` are written.
        source: the events' CloudEvents ``source``.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        processor: PaymentProcessor | None,
        *,
        outbox: Outbox | None = None,
        source: str = "payments",
    ) -> None:
        self.sessions = sessions
        self.processor = processor
        self.outbox = outbox or Outbox()
        self.source = source

    # ---------------------------------------------------------------- request
    async def request(
        self,
        session: AsyncSession | AsyncConnection,
        payment: Payment,
        *,
        amount: Decimal | None = None,
        decision: RefundDecision = _MANUAL,
        key: str | None = None,
        correlation_id: str | None = None,
    ) -> tuple[Refund, bool]:
        """Record a refund of `payment` in `session`'s transaction (it must not commit).

        A payment is refunded once per `key`, and its refunds never add up
        to more than was paid: each adds its amount to the payment's total
        under that total's row lock, so concurrent refunds of one payment
        wait for each other.

        Args:
            session: the caller's session (or connection), in a transaction.
            payment: the SUCCEEDED payment to refund.
            amount: how much (the whole payment by default).
            decision: the action and reason to record.
            key: what the refund is for, unique per payment (a cancellation's
                id, a return's): with the payment's id, at most 193
                characters (`refund_key`). None is the settlement's refund
                of the payment (`PaymentSettlement`'s).
            correlation_id: ties the refund's events to the flow that caused them.

        Returns:
            The refund, and whether this call created it (False: the payment
            already had one under this key, returned unchanged, and no
            event was written).

        Raises:
            InvalidRequest: the payment did not succeed, the amount is not
                within 0 (excluded) and the payment's amount, or the key is
                too long.
            OverRefund: the payment's refunds would exceed what was paid;
                nothing is refunded, and `session`'s transaction must be
                rolled back.
        """
        amount = payment.amount if amount is None else amount
        if not payment.succeeded:
            raise InvalidRequest(f"payment {payment.id} did not succeed: nothing to refund")
        if not 0 < amount <= payment.amount:
            raise InvalidRequest(
                f"a refund of payment {payment.id} is within 0 and {payment.amount}, got {amount}"
            )
        idempotency_key = refund_key(payment.id, key)
        if key == "" or len(idempotency_key) > 200:
            raise InvalidRequest(
                f"a refund's key is 1 character or more, and {idempotency_key!r} at most 200"
            )
        refund_id = str(uuid.uuid4())
        values = {
            "id": refund_id,
            "payment_id": payment.id,
            "reservation_id": payment.reservation_id,
            "user_id": payment.user_id,
            "amount": amount,
            "currency": payment.currency,
            "payment_amount": payment.amount,
            "action": decision.action.value,
            "reason": decision.reason.value,
            "text": decision.text,
            "status": RefundStatus.REQUESTED.value,
            "idempotency_key": idempotency_key,
            "requested_at": _now(),
        }
        dialect = dialect_of(session)
        statement = insert_or_ignore(dialect, RefundRow, values)
        inserted = (await session.execute(statement.returning(_REFUNDS.c.id))).first()
        row = (
            await session.execute(
                select(_REFUNDS).where(_REFUNDS.c.idempotency_key == idempotency_key)
            )
        ).one()  # inserted now, or by the request that won
        if inserted is None:
            log.info("payment %s already has refund %s; not refunded again", payment.id, row.id)
            return _to_refund(row), False
        await self._add_to_total(session, dialect, payment, amount)
        event = Envelope.wrap(
            RefundRequested(
                payment_id=payment.id,
                reservation_id=payment.reservation_id,
                user_id=payment.user_id,
                amount=amount,
                currency=payment.currency,
                refund_id=refund_id,
                reason=f"{decision.reason.value}: {decision.text}"[:500],
            ),
            source=self.source,
            id=f"refund.requested:{refund_id}",
            correlation_id=correlation_id,
        )
        await self.outbox.add(session, event)
        return _to_refund(row), True

    async def _add_to_total(
        self,
        session: AsyncSession | AsyncConnection,
        dialect: str,
        payment: Payment,
        amount: Decimal,
    ) -> None:
        """Add `amount` to what `payment`'s refunds total, or raise `OverRefund`.

        Compared here, in Decimal, under the total's row lock: SQLite keeps
        NUMERIC as a float, and ``refunded + amount <= paid`` in SQL would
        refuse a refund of exactly what is left.
        """
        paid, refunded = await _locked_total(session, dialect, payment)
        if refunded + amount > paid:
            raise OverRefund(payment.id, amount, in_units(paid - refunded, payment.currency))
        await session.execute(
            update(RefundTotalRow)
            .where(RefundTotalRow.payment_id == payment.id)
            .values(refunded=refunded + amount)
        )

    # --------------------------------------------------------------- complete
    async def complete(self, refund_id: str, *, correlation_id: str | None = None) -> Refund:
        """Make a REQUESTED refund through the processor (a COMPLETED one is returned as is).

        `correlation_id` (that of the ``refund.requested`` event, say) goes
        into the ``refund.completed`` event.

        Raises:
            LookupError: no refund has this id.
            RefundError: the processor did not refund; the refund stays
                REQUESTED with `last_error` set, and can be completed later.
            ConfigurationError: this service has no processor.
        """
        if self.processor is None:
            raise ConfigurationError("this RefundService has no processor: it records refunds only")
        error: RefundError | None = None
        async with self.sessions() as session, session.begin():
            # A write first: it takes the row on PostgreSQL and the write lock on
            # SQLite (which has no FOR UPDATE), so a concurrent complete waits here.
            await session.execute(
                update(RefundRow).where(RefundRow.id == refund_id).values(status=RefundRow.status)
            )
            row = await session.scalar(
                select(RefundRow).where(RefundRow.id == refund_id).with_for_update()
            )
            if row is None:
                raise LookupError(f"no refund {refund_id}")
            if row.status == RefundStatus.COMPLETED.value:
                return _to_refund(row)
            try:
                receipt = await self.processor.refund(
                    _payment_of(row), in_units(row.amount, row.currency), row.idempotency_key
                )
            except RefundError as exc:
                row.last_error = str(exc)[:2000]
                error = exc
            else:
                row.status = RefundStatus.COMPLETED.value
                row.processor_refund_id = receipt.id
                row.completed_at = _now()
                row.last_error = None
                await self.outbox.add(session, self._completed(row, correlation_id))
            refund = _to_refund(row)
        if error is not None:
            raise error
        return refund

    def _completed(self, row: RefundRow, correlation_id: str | None) -> Envelope[RefundCompleted]:
        return Envelope.wrap(
            RefundCompleted(
                payment_id=row.payment_id,
                reservation_id=row.reservation_id,
                user_id=row.user_id,
                amount=row.amount,
                currency=row.currency,
                refund_id=row.id,
            ),
            source=self.source,
            id=f"refund.completed:{row.id}",
            correlation_id=correlation_id,
        )

    # ------------------------------------------------------------ convenience
    async def refund(
        self,
        payment: Payment,
        *,
        amount: Decimal | None = None,
        decision: RefundDecision = _MANUAL,
        key: str | None = None,
    ) -> Refund:
        """Request (in its own transaction) and complete a refund of `payment`.

        A second call for the same payment and `key` changes nothing and
        returns the refund of the first (completing it if it is still
        REQUESTED). Without a processor the refund is returned REQUESTED.

        Raises:
            OverRefund: the payment's refunds would exceed what was paid.
        """
        async with self.sessions() as session, session.begin():
            refund, _ = await self.request(
                session, payment, amount=amount, decision=decision, key=key
            )
        if self.processor is None:
            return refund
        return await self.complete(refund.id)

    async def get(self, payment_id: str, key: str | None = None) -> Refund | None:
        """The payment's refund under `key` (None: the settlement's refund), if it has one."""
        return await self._one(_REFUNDS.c.idempotency_key == refund_key(payment_id, key))

    async def find(self, refund_id: str) -> Refund | None:
        """The refund with this id, if there is one."""
        return await self._one(_REFUNDS.c.id == refund_id)

    async def of_payment(self, payment_id: str) -> list[Refund]:
        """Every refund of a payment, oldest first."""
        async with self.sessions() as session:
            rows = await session.execute(
                select(_REFUNDS)
                .where(_REFUNDS.c.payment_id == payment_id)
                .order_by(_REFUNDS.c.requested_at, _REFUNDS.c.id)
            )
            return [_to_refund(row) for row in rows]

    async def refundable(self, payment: Payment) -> Decimal:
        """What `payment`'s refunds leave of it to refund (all of it, before any)."""
        async with self.sessions() as session:
            return await self.refundable_in(session, payment)

    async def refundable_in(
        self, session: AsyncSession | AsyncConnection, payment: Payment, *, lock: bool = False
    ) -> Decimal:
        """`refundable`, read in `session`'s transaction.

        With `lock`, the payment's total stays locked until that transaction
        ends: a refund of at most what this returns, requested in it, cannot
        be refused by another refund of the payment made meanwhile.
        """
        if lock:
            paid, total = await _locked_total(session, dialect_of(session), payment)
            return in_units(paid - total, payment.currency)
        refunded = await session.scalar(
            select(_TOTALS.c.refunded).where(_TOTALS.c.payment_id == payment.id)
        )
        return payment.amount - (refunded or Decimal(0))

    async def _one(self, where: ColumnElement[bool]) -> Refund | None:
        async with self.sessions() as session:
            row = (await session.execute(select(_REFUNDS).where(where))).first()
            return None if row is None else _to_refund(row)

    async def for_reservation(self, reservation_id: str) -> list[Refund]:
        """The refunds of every payment for a reservation, oldest first."""
        async with self.sessions() as session:
            rows = await session.scalars(
                select(RefundRow)
                .where(RefundRow.reservation_id == reservation_id)
                .order_by(RefundRow.requested_at, RefundRow.id)
            )
            return [_to_refund(row) for row in rows]

    async def retry_pending(self, limit: int = 100) -> list[Refund]:
        """Complete up to `limit` REQUESTED refunds; return those completed now.

        Without a processor nothing is completed, and the list is empty.
        """
        if self.processor is None:
            return []
        async with self.sessions() as session:
            ids = list(
                await session.scalars(
                    select(RefundRow.id)
                    .where(RefundRow.status == RefundStatus.REQUESTED.value)
                    .order_by(RefundRow.requested_at)
                    .limit(limit)
                )
            )
        done: list[Refund] = []
        for refund_id in ids:
            try:
                refund = await self.complete(refund_id)
            except RefundError:
                log.warning("refund %s still failing; left REQUESTED", refund_id, exc_info=True)
                continue
            done.append(refund)
        return done
