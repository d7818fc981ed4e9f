"""EmailNotifier: one mail per event, whatever is redelivered, on the in-memory bus."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import pytest

from commercekit.email import EmailNotifier, InMemoryRecipients, Mailer, MemorySender
from commercekit.events import Envelope, InMemoryEventBus
from commercekit.events.bus import EventRetry
from commercekit.events.catalog import (
    OrderCancelled,
    OrderFulfilled,
    OrderUnits,
    PaymentConfirmed,
    PaymentFailed,
    RefundCompleted,
    ReservationExpired,
    UserCreated,
)
from commercekit.events.idempotency import InMemoryProcessedEventStore


def _money(kind: type, **extra: object) -> Envelope:
    payload = kind(
        payment_id="pay-1", reservation_id="res-1", user_id="u-1",
        amount=Decimal("12.50"), currency="EUR", **extra,
    )  # fmt: skip
    return Envelope.wrap(payload, source="test")


@pytest.fixture
def sender() -> MemorySender:
    return MemorySender()


@pytest.fixture
def notifier(sender: MemorySender) -> EmailNotifier:
    return EmailNotifier(
        Mailer(sender, shop_name="Acme"),
        recipients=InMemoryRecipients(),
        processed=InMemoryProcessedEventStore(),
    )


async def test_each_event_type_sends_its_mail_once_even_when_redelivered(
    notifier: EmailNotifier, sender: MemorySender
) -> None:
    bus = InMemoryEventBus()
    notifier.subscribe(bus)
    welcome = Envelope.wrap(
        UserCreated(user_id="u-1", username="<b>ada</b>", email="ada@example.com"), source="test"
    )
    events = [
        welcome,
        _money(PaymentConfirmed),
        _money(PaymentFailed, reason="card declined"),
        _money(RefundCompleted, refund_id="ref-1"),
    ]
    async with bus:
        for _ in range(3):  # every event delivered three times
            await bus.publish(welcome)  # the users topic first: signup precedes payment
            await bus.drain()
            await bus.publish_many(events[1:])
        await bus.drain()

    assert sender.attempts == 4  # the redeliveries never reached the sender
    subjects = [sent.message.subject for sent in sender.outbox]
    assert len(subjects) == 4
    assert {sent.message.to for sent in sender.outbox} == {("ada@example.com",)}
    keys = sorted(sent.idempotency_key for sent in sender.outbox)
    assert keys == sorted(
        f"{name}/{event.id}"
        for name, event in zip(
            ["welcome", "payment_succeeded", "payment_failed", "refund_issued"], events, strict=True
        )
    )
    failed = next(s for s in sender.outbox if s.idempotency_key.startswith("payment_failed/"))
    assert "card declined" in failed.message.text
    assert "&lt;b&gt;ada&lt;/b&gt;" in sender.outbox[0].message.html


async def test_a_shipment_and_a_cancellation_mail_their_units_to_the_orders_owner(
    notifier: EmailNotifier, sender: MemorySender
) -> None:
    await notifier.handle(
        Envelope.wrap(
            UserCreated(user_id="u-1", username="ada", email="ada@example.com"), source="test"
        )
    )
    east = OrderUnits(sku="MUG", location="east", quantity=1)
    west = OrderUnits(sku="MUG", location="west", quantity=2)
    shipped = OrderFulfilled(
        order_id="res-1", owner="u-1", lines=(east, west), status="PARTIALLY_FULFILLED",
        shipment_id="parcel-1",
    )  # fmt: skip
    cancelled = OrderCancelled(
        order_id="res-1", owner="u-1", lines=(east,), status="FULFILLED", cancellation_id="t-1"
    )
    for event in (Envelope.wrap(shipped, source="test"), Envelope.wrap(cancelled, source="test")):
        await notifier.handler()(event)
        await notifier.handler()(event)  # redelivered: one mail
    mails = {s.idempotency_key.split("/")[0]: s.message for s in sender.outbox}
    assert set(mails) == {"welcome", "order_shipped", "order_cancelled"}
    assert sender.attempts == 3
    assert mails["order_shipped"].subject == "Part of order res-1 has shipped"
    assert "- 3 x MUG" in mails["order_shipped"].text  # the two locations' units together
    assert "The rest follows" in mails["order_shipped"].text
    assert mails["order_cancelled"].subject == "Part of order res-1 is cancelled"
    assert mails["order_cancelled"].to == ("ada@example.com",)


async def test_other_events_send_nothing(notifier: EmailNotifier, sender: MemorySender) -> None:
    now = dt.datetime.now(dt.UTC)
    expired = ReservationExpired(
        reservation_id="res-1", owner="u-1", lines=[{"sku": "A", "quantity": 1}], expired_at=now
    )
    await notifier.handle(Envelope.wrap(expired, source="test"))
    assert sender.attempts == 0


async def test_a_payment_for_an_unknown_user_waits_then_is_dead_lettered(
    sender: MemorySender,
) -> None:
    notifier = EmailNotifier(
        Mailer(sender, shop_name="Acme"),
        recipients=InMemoryRecipients(),
        processed=InMemoryProcessedEventStore(),
        recipient_wait=0.3,
    )
    bus = InMemoryEventBus(retry=EventRetry(max_attempts=3, initial_backoff=0, max_backoff=0))
    notifier.subscribe(bus)
    async with bus:
        await bus.publish(_money(PaymentConfirmed))
        await bus.drain()
    assert sender.attempts == 0
    [dead] = bus.dead_letters()
    assert dead.error == "UnknownRecipient"
    assert dead.reason.startswith("not ready after waiting 0.3")
    assert "no address for user u-1" in dead.reason
    assert bus.deferred("email") == 0


async def test_a_payment_before_its_users_signup_is_mailed_once_the_signup_is_in(
    notifier: EmailNotifier, sender: MemorySender
) -> None:
    bus = InMemoryEventBus()
    notifier.subscribe(bus)
    signup = Envelope.wrap(
        UserCreated(user_id="u-1", username="ada", email="ada@example.com"), source="test"
    )
    async with bus:
        await bus.publish(_money(PaymentConfirmed))  # the payments topic is ahead
        async with asyncio.timeout(5):
            while bus.deferred("email") == 0:  # noqa: ASYNC110 - waiting on the consumer
                await asyncio.sleep(0.01)
        await bus.publish(signup)
        async with asyncio.timeout(5):
            await bus.drain()
    assert [s.message.tags["template"] for s in sender.outbox] == ["welcome", "payment_succeeded"]
    assert bus.dead_letters() == []
    assert bus.deferred("email") == 0
