"""`EmailNotifier`: the transactional mails, driven by catalog events.

```python
notifier = EmailNotifier(mailer, recipients=SqlRecipients(engine), processed=redis_store)
notifier.subscribe(bus)          # consumer group "email"
await bus.start()
```

| event | mail |
|---|---|
| ``user.created`` | welcome (and the user's address is remembered) |
| ``payment.confirmed`` | payment succeeded |
| ``payment.failed`` | payment failed, with the reason |
| ``refund.completed`` | refund issued |
| ``order.fulfilled`` | order shipped (a part of it, or the rest) |
| ``order.cancelled`` | order cancelled (a part of it, or the whole) |

No mail is lost and none is sent twice. Each mail goes to the sender with
the key ``<template>/<event id>``, which Resend honours (a second send with
the key is no second mail), and the event is recorded as processed only
after the mail was sent (`commercekit.events.idempotency.record_after`). A
crash at any point before that record (before the send, during it, after
it) leaves the event unrecorded: its redelivery remembers the recipient
again and sends again, with the same key. A redelivery after the record is
skipped without calling the sender.

Events of different topics come in any order: a payment of a brand-new user
may be handled before the ``user.created`` that gives the address. The
notifier then raises `UnknownRecipient`, a `NotReadyYet`: the bus parks the
event (its partition waits, the others go on, ``user.created`` too) and
delivers it again until the address is known, for `recipient_wait` seconds
at most; then it goes to the dead-letter topic, saying so.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from commercekit.email.mailer import Mailer
from commercekit.email.recipients import Recipient, RecipientDirectory
from commercekit.errors import EmailError, NotReadyYet
from commercekit.events.bus import EventBus, Handler
from commercekit.events.catalog import (
    OrderCancelled,
    OrderFulfilled,
    PaymentConfirmed,
    PaymentFailed,
    RefundCompleted,
    UserCreated,
)
from commercekit.events.envelope import Envelope
from commercekit.events.idempotency import ProcessedEventStore, record_after

__all__ = ["EMAIL_EVENT_TYPES", "EmailNotifier", "UnknownRecipient"]

logger = logging.getLogger("commercekit.email.notifier")

EMAIL_EVENT_TYPES = (
    "user.created",
    "payment.confirmed",
    "payment.failed",
    "refund.completed",
    "order.fulfilled",
    "order.cancelled",
)
"""The event types that send a mail."""


class UnknownRecipient(EmailError, NotReadyYet):
    """No address is known for the event's user yet (its ``user.created`` is not in).

    A `NotReadyYet`: the bus parks the event and delivers it again later,
    for `wait` seconds at most, then dead-letters it.
    """


class EmailNotifier:
    """Sends the mail each catalog event calls for: at least once, with one key per mail.

    Args:
        mailer: renders and sends the mails.
        recipients: remembers addresses from ``user.created``; looked up for
            payment and refund events.
        processed: where events are recorded as processed, once their mail was sent.
        group: the consumer group (and the name events are claimed under).
        recipient_wait: how long, in seconds, a payment or refund event waits
            for its user's ``user.created`` before it is dead-lettered; the
            bus's ``not_ready_wait`` when None.
    """

    def __init__(
        self,
        mailer: Mailer,
        *,
        recipients: RecipientDirectory,
        processed: ProcessedEventStore,
        group: str = "email",
        recipient_wait: float | None = None,
    ) -> None:
        self.mailer = mailer
        self.recipients = recipients
        self.processed = processed
        self.group = group
        self.recipient_wait = recipient_wait

    def handler(self) -> Handler:
        """The handler to subscribe with: skips recorded events, records after the send."""
        return record_after(self.processed, self.group, self.handle)

    def subscribe(self, bus: EventBus) -> None:
        """Subscribe the notifier to the mail-sending event types on `bus`."""
        bus.subscribe(self.group, self.handler(), types=EMAIL_EVENT_TYPES)

    async def handle(self, event: Envelope[Any]) -> None:
        """Send the mail for one event (other types are ignored)."""
        data = event.data
        if isinstance(data, UserCreated):
            recipient = Recipient(data.user_id, data.email, data.username)
            await self.recipients.remember(recipient)
            await self.mailer.welcome(
                recipient.email, username=recipient.name, idempotency_key=event.id
            )
        elif isinstance(data, PaymentConfirmed):
            to = await self._recipient(data.user_id, event)
            await self.mailer.payment_succeeded(
                to.email, name=to.name, idempotency_key=event.id, **_money(data)
            )
        elif isinstance(data, PaymentFailed):
            to = await self._recipient(data.user_id, event)
            await self.mailer.payment_failed(
                to.email, name=to.name, reason=data.reason, idempotency_key=event.id, **_money(data)
            )
        elif isinstance(data, RefundCompleted):
            to = await self._recipient(data.user_id, event)
            await self.mailer.refund_issued(
                to.email, name=to.name, idempotency_key=event.id, **_money(data)
            )
        elif isinstance(data, OrderFulfilled | OrderCancelled):
            to = await self._recipient(data.owner, event)
            send, whole = (
                (self.mailer.order_shipped, "FULFILLED")
                if isinstance(data, OrderFulfilled)
                else (self.mailer.order_cancelled, "CANCELLED")
            )
            await send(
                to.email,
                name=to.name,
                order_id=data.order_id,
                lines=_units(data),
                complete=data.status == whole,  # the last shipment, or the whole order
                idempotency_key=event.id,
            )

    async def _recipient(self, user_id: str, event: Envelope[Any]) -> Recipient:
        recipient = await self.recipients.lookup(user_id)
        if recipient is None:
            raise UnknownRecipient(
                f"no address for user {user_id} (event {event.id} {event.type})",
                wait=self.recipient_wait,
            )
        return recipient


def _units(data: OrderFulfilled | OrderCancelled) -> list[tuple[str, int]]:
    """The event's units per SKU (the locations they left or came back to summed)."""
    units: dict[str, int] = {}
    for line in data.lines:
        units[line.sku] = units.get(line.sku, 0) + line.quantity
    return list(units.items())


def _money(data: PaymentConfirmed | PaymentFailed | RefundCompleted) -> dict[str, Any]:
    return {
        "reservation_id": data.reservation_id,
        "amount": Decimal(str(data.amount)),
        "currency": data.currency,
    }
