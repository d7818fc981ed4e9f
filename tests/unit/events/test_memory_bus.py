"""InMemoryEventBus's own API: its topic logs, lag, drain and dead letters read back.

The `EventBus` behaviour itself is the contract's (test_bus_contract.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from commercekit.errors import ConfigurationError
from commercekit.events import (
    Envelope,
    EventLine,
    EventRetry,
    InMemoryEventBus,
    ReservationReleased,
    TopicNames,
)
from commercekit.events.envelope import CONTENT_TYPE

FAST = EventRetry(max_attempts=1, initial_backoff=0.001, max_backoff=0.001)


def released(reservation: str, seq: int) -> Envelope[ReservationReleased]:
    payload = ReservationReleased(
        reservation_id=reservation,
        owner="u",
        lines=(EventLine(sku="A", quantity=1),),
        reason=str(seq),
    )
    return Envelope.wrap(payload, source="tests")


def test_a_topic_has_at_least_one_partition() -> None:
    with pytest.raises(ConfigurationError):
        InMemoryEventBus(partitions=0)


async def test_records_lag_and_drain_show_what_was_published_and_handled() -> None:
    bus = InMemoryEventBus(topics=TopicNames(prefix="t."), partitions=2)
    release = asyncio.Event()
    handled: list[int] = []

    async def gated(event: Envelope[Any]) -> None:
        await release.wait()
        handled.append(int(event.data.reason))

    bus.subscribe("g", gated, types=["reservation.released"])
    events = [released("r", n) for n in range(3)]
    await bus.publish_many(events)  # before start: kept for the group
    records = bus.records("t.reservations")
    assert [r.value for r in records] == [e.to_json() for e in events]
    assert {r.key for r in records} == {b"r"}
    assert {r.headers for r in records} == {(("content-type", CONTENT_TYPE.encode()),)}
    assert bus.records("t.users") == []
    assert bus.lag("g") == 3
    assert bus.lag("another-group") == 0
    async with bus:
        draining = asyncio.create_task(bus.drain())
        await asyncio.sleep(0.02)
        assert not draining.done()  # the handler is held: drain waits
        assert bus.lag("g") == 3
        release.set()
        async with asyncio.timeout(5):
            await draining
        assert handled == [0, 1, 2]
        assert bus.lag("g") == 0


async def test_dead_letters_reads_the_dead_letter_topic_back() -> None:
    bus = InMemoryEventBus(topics=TopicNames(prefix="t."), retry=FAST)

    async def failing(event: Envelope[Any]) -> None:
        raise ValueError("no")

    bus.subscribe("g", failing, types=["reservation.released"])
    event = released("r", 1)
    async with bus:
        await bus.publish(event)
        async with asyncio.timeout(5):
            await bus.drain()
    [letter] = bus.dead_letters()
    assert (letter.value, letter.key, letter.error, letter.group) == (
        event.to_json(),
        b"r",
        "ValueError",
        "g",
    )
    [record] = bus.records("t.dead-letter")
    assert record.value == event.to_json()
    assert bus.deferred("g") == 0
