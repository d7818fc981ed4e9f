"""`record_after`: the effect first, then the record, so a crash never loses the effect."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest

from commercekit.email import EmailNotifier, InMemoryRecipients, Mailer, MemorySender
from commercekit.events import (
    Envelope,
    EventRetry,
    InMemoryEventBus,
    InMemoryProcessedEventStore,
    ProcessedEventStore,
    RedisProcessedEventStore,
    UserCreated,
)
from commercekit.events.idempotency import record_after


def event() -> Envelope[UserCreated]:
    return Envelope.wrap(UserCreated(user_id="u1", username="ada", email="a@x.io"), source="t")


class Crash(BaseException):
    """The process dies here (not an error a handler or the bus would catch)."""


class CrashingStore(InMemoryProcessedEventStore):
    """Dies on the next `claim`: the effect was made, the record never written."""

    crash_next = False

    async def claim(self, consumer: str, event_id: str) -> bool:
        if self.crash_next:
            self.crash_next = False
            raise Crash
        return await super().claim(consumer, event_id)


async def test_an_event_is_recorded_only_after_its_handler_returned() -> None:
    store = InMemoryProcessedEventStore()
    seen_during: list[bool] = []

    async def handle(e: Envelope[Any]) -> None:
        seen_during.append(await store.seen("email", e.id))

    once = record_after(store, "email", handle)
    first = event()
    await once(first)
    await once(first)  # recorded: skipped
    assert seen_during == [False]
    assert await store.seen("email", first.id)
    assert not await store.seen("audit", first.id)


async def test_a_failed_handler_records_nothing_and_runs_again() -> None:
    store = InMemoryProcessedEventStore()
    calls = 0

    async def flaky(e: Envelope[Any]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("provider down")

    once = record_after(store, "email", flaky)
    e = event()
    with pytest.raises(RuntimeError):
        await once(e)
    assert not await store.seen("email", e.id)
    await once(e)
    await once(e)
    assert calls == 2


@pytest.mark.parametrize("crash", ["in the send", "after the send"])
async def test_a_crash_around_the_send_means_one_mail_sent_again_with_the_same_key(
    crash: str,
) -> None:
    sender = MemorySender()
    store = CrashingStore()
    notifier = EmailNotifier(Mailer(sender), recipients=InMemoryRecipients(), processed=store)
    handler = notifier.handler()
    created = event()
    if crash == "in the send":
        sender.fail_next(Crash())  # type: ignore[arg-type] # the process dies mid-request
    else:
        store.crash_next = True  # the mail went out; the record did not
    with pytest.raises(Crash):
        await handler(created)
    assert not await store.seen("email", created.id)

    await handler(created)  # the redelivery after the restart
    await handler(created)  # and one after the record: skipped

    assert sender.attempts == 2
    assert [s.idempotency_key for s in sender.outbox] == [f"welcome/{created.id}"]
    assert await notifier.recipients.lookup("u1") is not None


async def test_on_the_bus_a_redelivery_after_the_record_never_reaches_the_sender() -> None:
    sender = MemorySender()
    notifier = EmailNotifier(
        Mailer(sender), recipients=InMemoryRecipients(), processed=InMemoryProcessedEventStore()
    )
    bus = InMemoryEventBus(retry=EventRetry(max_attempts=3, initial_backoff=0))
    notifier.subscribe(bus)
    e = event()
    sender.fail_next(RuntimeError("provider down"))
    async with bus:
        await bus.publish_many([e, e, e])
        await bus.drain()
    assert sender.attempts == 2  # the failed try, then the one that sent
    assert len(sender.outbox) == 1


async def test_the_redis_store_knows_what_it_recorded() -> None:
    store = RedisProcessedEventStore(fakeredis.FakeAsyncRedis(), prefix="t:")
    assert isinstance(store, ProcessedEventStore)
    assert not await store.seen("email", "e1")
    assert await store.claim("email", "e1")
    assert await store.seen("email", "e1")
    assert not await store.seen("audit", "e1")
    await store.release("email", "e1")
    assert not await store.seen("email", "e1")
