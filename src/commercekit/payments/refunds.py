"""`RefundService`: one payment, at most one refund, whatever is redelivered.

```python
refunds = RefundService(sessions, processor)
refund = await refunds.refund(payment, decision=decision)  # record, then pay out
await refunds.refund(payment, decision=decision)           # a no-op: the same refund
```

A refund is two steps:

1. **request**: a row in ``commercekit_refunds`` (UNIQUE on the payment id)
   and a ``refund.requested`` event in the transactional outbox, in one
   transaction (yours, with `request`, or its own). A second request for the
   payment inserts nothing and returns the first refund.
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

from commercekit.errors import ConfigurationError, InvalidRequest, MissingExtraError, RefundError
from commercekit.events.catalog import RefundCompleted, RefundRequested
from commercekit.events.envelope import Envelope
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
    from sqlalchemy import select
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from commercekit.events.outbox import Outbox
    from commercekit.payments._tables import RefundRow
    from commercekit.sql import insert_or_ignore
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtraError("postgres", __name__) from exc

__all__ = ["RefundService"]

log = logging.getLogger("commercekit.payments")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _to_refund(row: RefundRow) -> Refund:
    return Refund(
        id=row.id,
        payment_id=row.payment_id,
        reservation_id=row.reservation_id,
        user_id=row.user_id,
        amount=row.amount,
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


def _payment_of(row: RefundRow) -> Payment:
    return Payment(
        id=row.payment_id,
        reservation_id=row.reservation_id,
        user_id=row.user_id,
        amount=row.payment_amount,
        currency=row.currency,
        status=PaymentStatus.SUCCEEDED,
    )


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
        session: AsyncSession,
        payment: Payment,
        *,
        amount: Decimal | None = None,
        decision: RefundDecision = _MANUAL,
        correlation_id: str | None = None,
    ) -> tuple[Refund, bool]:
        """Record a refund of `payment` in `session`'s transaction (it must not commit).

        Args:
            session: the caller's session, in a transaction.
            payment: the SUCCEEDED payment to refund.
            amount: how much (the whole payment by default).
            decision: the action and reason to record.
            correlation_id: ties the refund's events to the flow that caused them.

        Returns:
            The refund, and whether this call created it (False: the payment
            already had one, returned unchanged, and no event was written).

        Raises:
            InvalidRequest: the payment did not succeed, or the amount is not
                within 0 (excluded) and the payment's amount.
        """
        amount = payment.amount if amount is None else amount
        if not payment.succeeded:
            raise InvalidRequest(f"payment {payment.id} did not succeed: nothing to refund")
        if not 0 < amount <= payment.amount:
            raise InvalidRequest(
                f"a refund of payment {payment.id} is within 0 and {payment.amount}, got {amount}"
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
            "idempotency_key": f"refund:{payment.id}",
            "requested_at": _now(),
        }
        statement = insert_or_ignore(session.get_bind().dialect.name, RefundRow, values)
        inserted = (await session.execute(statement.returning(RefundRow.id))).first()
        row = await session.scalar(select(RefundRow).where(RefundRow.payment_id == payment.id))
        assert row is not None  # inserted now, or by the request that won
        if inserted is None:
            log.info("payment %s already has refund %s; not refunded again", payment.id, row.id)
            return _to_refund(row), False
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
            row = await session.scalar(
                select(RefundRow).where(RefundRow.id == refund_id).with_for_update()
            )
            if row is None:
                raise LookupError(f"no refund {refund_id}")
            if row.status == RefundStatus.COMPLETED.value:
                return _to_refund(row)
            try:
                receipt = await self.processor.refund(
                    _payment_of(row), row.amount, row.idempotency_key
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
    ) -> Refund:
        """Request (in its own transaction) and complete a refund of `payment`.

        A second call for the same payment changes nothing and returns the
        refund of the first (completing it if it is still REQUESTED). Without
        a processor the refund is returned REQUESTED.
        """
        async with self.sessions() as session, session.begin():
            refund, _ = await self.request(session, payment, amount=amount, decision=decision)
        if self.processor is None:
            return refund
        return await self.complete(refund.id)

    async def get(self, payment_id: str) -> Refund | None:
        """The refund of a payment, if it has one."""
        async with self.sessions() as session:
            row = await session.scalar(select(RefundRow).where(RefundRow.payment_id == payment_id))
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
