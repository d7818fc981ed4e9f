"""The idempotent wrapper and the in-memory processed-event store."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from commercekit.events import (
    CATALOG,
    Envelope,
    EventRetry,
    InMemoryEventBus,
    InMemoryProcessedEventStore,
    ProcessedEventStore,
    UserCreated,
    idempotent,
)


def event() -> Envelope[UserCreated]:
    return Envelope.wrap(UserCreated(user_id="u1", username="a", email="a@x.io"), source="t")


def test_stores_follow_the_protocol() -> None:
    assert isinstance(InMemoryProcessedEventStore(), ProcessedEventStore)


async def test_a_redelivered_event_has_no_second_effect() -> None:
    store = InMemoryProcessedEventStore()
    effects: list[str] = []

    async def handle(e: Envelope[Any]) -> None:
        effects.append(e.id)

    once = idempotent(store, "email", handle)
    first = event()
    await once(first)
    await once(first)
    await once(CATALOG.decode(first.to_json()))  # the same id, decoded again
    assert effects == [first.id]
    other_consumer = idempotent(store, "audit", handle)
    await other_consumer(first)
    assert effects == [first.id, first.id]


async def test_a_failed_handler_releases_its_claim() -> None:
    store = InMemoryProcessedEventStore()
    calls = 0

    async def flaky(e: Envelope[Any]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("smtp down")

    once = idempotent(store, "email", flaky)
    e = event()
    with pytest.raises(RuntimeError):
        await once(e)
    await once(e)
    await once(e)
    assert calls == 2


async def test_a_claim_expires_after_its_ttl() -> None:
    store = InMemoryProcessedEventStore(ttl=dt.timedelta(0))
    assert await store.claim("c", "e1")
    assert await store.claim("c", "e1")
    lasting = InMemoryProcessedEventStore()
    assert await lasting.claim("c", "e1")
    assert not await lasting.claim("c", "e1")
    await lasting.release("c", "e1")
    assert await lasting.claim("c", "e1")


async def test_with_the_bus_a_republished_event_is_handled_once() -> None:
    bus = InMemoryEventBus(retry=EventRetry(max_attempts=3, initial_backoff=0))
    store = InMemoryProcessedEventStore()
    effects: list[str] = []
    failures = 1

    async def handle(e: Envelope[Any]) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise RuntimeError("first try fails")
        effects.append(e.id)

    bus.subscribe("g", idempotent(store, "g", handle))
    e = event()
    async with bus:
        await bus.publish_many([e, e, e])  # an outbox retry can publish twice
        await bus.drain()
    assert effects == [e.id]
