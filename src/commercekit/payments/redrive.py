"""`redrive_payments`: no payment stays "processing" forever.

```python
redriven = await redrive_payments(sessions, older_than=dt.timedelta(minutes=2))
```

A payment recorded by `PaymentService` is "processing" until
`PaymentSettlement` has recorded its outcome. If its ``payment.confirmed``
/ ``payment.failed`` never gets there (dead-lettered by a bug, lost with an
acknowledged commit of a crashed database), nothing else would ever settle
it. Run `redrive_payments` from a scheduler: each payment older than
`older_than` that has no settlement outcome gets its outcome event sent
again, with the same event id, through the outbox (its outbox row is
marked unsent, or written again if it is gone). The processor is not asked
to charge again: the payment's outcome is the one recorded with its
idempotency key.

**Exactly once.** The event keeps its id, so a consumer that did handle it
changes nothing (its processed-event record), and one that did not settles
it now. Each payment is claimed with a conditional update of its row
(``redriven_at``), so several schedulers running at once re-drive it once,
and not again before `older_than` has passed once more.

It reads the settlement's records (``commercekit_payment_settlements``),
so run it on the database `PaymentSettlement` writes to.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from commercekit.errors import MissingExtraError
from commercekit.events.envelope import Envelope
from commercekit.payments.models import Payment

try:
    from sqlalchemy import select, update
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from commercekit.events._tables import OutboxMessage
    from commercekit.events.outbox import Outbox
    from commercekit.payments._tables import PaymentRow, SettlementRow
    from commercekit.payments.service import outcome_event, to_payment
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtraError("postgres", __name__) from exc

__all__ = ["redrive_payments"]

log = logging.getLogger("commercekit.payments")


async def redrive_payments(
    sessions: async_sessionmaker[AsyncSession],
    *,
    older_than: dt.timedelta | float,
    limit: int = 100,
    outbox: Outbox | None = None,
    source: str = "payments",
) -> list[Payment]:
    """Send again the outcome of up to `limit` payments older than `older_than` left unsettled.

    Args:
        sessions: the database of the payments and their settlements.
        older_than: a payment younger than this (or re-driven more recently)
            is left alone; choose it longer than a settlement normally
            takes, and shorter than `PaymentService.payment_hold`.
        limit: at most this many payments per call, oldest first.
        outbox: where an event that is gone is written again.
        source: the ``source`` of an event written again.

    Returns:
        The payments this call re-drove (none twice, whatever runs beside it).
    """
    if not isinstance(older_than, dt.timedelta):
        older_than = dt.timedelta(seconds=older_than)
    outbox = outbox or Outbox()
    now = dt.datetime.now(dt.UTC)
    cutoff = now - older_than
    async with sessions() as session:
        rows = list(
            await session.scalars(
                select(PaymentRow)
                .outerjoin(SettlementRow, SettlementRow.payment_id == PaymentRow.id)
                .where(
                    PaymentRow.created_at < cutoff,
                    (PaymentRow.redriven_at.is_(None)) | (PaymentRow.redriven_at < cutoff),
                    SettlementRow.outcome.is_(None),  # no settlement row, or none finished
                )
                .order_by(PaymentRow.created_at, PaymentRow.id)
                .limit(limit)
            )
        )
    redriven: list[Payment] = []
    for row in rows:
        payment = to_payment(row)
        event = outcome_event(payment, source=source, correlation_id=None)
        if await _redrive(sessions, outbox, event, now=now, cutoff=cutoff):
            redriven.append(payment)
    if redriven:
        log.warning(
            "re-drove %d payment(s) left without an outcome",
            len(redriven),
            extra={"payments": [p.id for p in redriven]},
        )
    return redriven


async def _redrive(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    event: Envelope[Any],
    *,
    now: dt.datetime,
    cutoff: dt.datetime,
) -> bool:
    """Claim one payment and send its outcome `event` again, in one transaction.

    False: another scheduler has it, or it was settled meanwhile.
    """
    payment_id = event.data.payment_id
    async with sessions() as session, session.begin():
        claimed = await session.execute(
            update(PaymentRow)
            .where(
                PaymentRow.id == payment_id,
                (PaymentRow.redriven_at.is_(None)) | (PaymentRow.redriven_at < cutoff),
            )
            .values(redriven_at=now, redrives=PaymentRow.redrives + 1)
        )
        if not claimed.rowcount:  # type: ignore[attr-defined]
            return False  # another scheduler re-drives it right now
        settled = await session.scalar(
            select(SettlementRow.outcome).where(SettlementRow.payment_id == payment_id)
        )
        if settled is not None:
            return False  # settled meanwhile: nothing to do
        resent = await session.execute(
            update(OutboxMessage).where(OutboxMessage.event_id == event.id).values(sent_at=None)
        )
        if not resent.rowcount:  # type: ignore[attr-defined]
            await outbox.add(session, event)  # the event itself was lost: write it again
    return True
