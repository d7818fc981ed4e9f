"""InMemoryEventBus: the EventBus semantics without a broker."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from typing import Any

import pytest

from commercekit.errors import BackendUnavailable, UnknownEventType
from commercekit.events import (
    Envelope,
    EventBus,
    EventLine,
    EventRetry,
    InMemoryEventBus,
    ReservationReleased,
    TopicNames,
    UserCreated,
)

FAST = EventRetry(max_attempts=3, initial_backoff=0.001, max_backoff=0.001)


def released(reservation: str, seq: int) -> Envelope[ReservationReleased]:
    payload = ReservationReleased(
        reservation_id=reservation,
        owner="u",
        lines=(EventLine(sku="A", quantity=1),),
        reason=str(seq),
    )
    return Envelope.wrap(payload, source="tests")


def user(n: int) -> Envelope[UserCreated]:
    return Envelope.wrap(
        UserCreated(user_id=f"u{n}", username=f"n{n}", email=f"u{n}@x.io"), source="tests"
    )


async def drained(bus: InMemoryEventBus) -> None:
    async with asyncio.timeout(5):
        await bus.drain()


def test_it_is_an_event_bus() -> None:
    assert isinstance(InMemoryEventBus(), EventBus)


async def test_every_group_sees_every_event_and_one_group_shares_them() -> None:
    bus = InMemoryEventBus(partitions=4)
    seen: dict[str, list[str]] = defaultdict(list)

    def recorder(name: str) -> Any:
        async def handle(event: Envelope[Any]) -> None:
            seen[name].append(event.id)

        return handle

    bus.subscribe("email", recorder("email"))
    bus.subscribe("inventory", recorder("inventory-a"))
    bus.subscribe("inventory", recorder("inventory-b"))
    events = [released(f"r{i % 10}", i) for i in range(200)]
    async with bus:
        await bus.publish_many(events)
        await drained(bus)
    ids = sorted(e.id for e in events)
    assert sorted(seen["email"]) == ids
    assert sorted(seen["inventory-a"] + seen["inventory-b"]) == ids
    assert seen["inventory-a"]
    assert seen["inventory-b"]
    assert set(seen["inventory-a"]).isdisjoint(seen["inventory-b"])


async def test_events_of_one_key_arrive_in_publish_order() -> None:
    bus = InMemoryEventBus(partitions=3)
    order: dict[str, list[int]] = defaultdict(list)

    async def handle(event: Envelope[Any]) -> None:
        await asyncio.sleep(0)
        order[event.key].append(int(event.data.reason))

    bus.subscribe("g", handle)
    async with bus:
        for i in range(300):
            await bus.publish(released(f"r{i % 7}", i))
        await drained(bus)
    assert order == {f"r{k}": list(range(k, 300, 7)) for k in range(7)}


async def test_a_failing_handler_is_retried_then_succeeds() -> None:
    bus = InMemoryEventBus(retry=FAST)
    calls: list[str] = []

    async def flaky(event: Envelope[Any]) -> None:
        calls.append(event.id)
        if len(calls) < 3:
            raise RuntimeError("database hiccup")

    bus.subscribe("g", flaky)
    async with bus:
        event = user(1)
        await bus.publish(event)
        await drained(bus)
    assert calls == [event.id] * 3
    assert bus.dead_letters() == []


async def test_poison_goes_to_the_dead_letter_topic_and_the_consumer_moves_on() -> None:
    bus = InMemoryEventBus(retry=FAST, topics=TopicNames(prefix="t."), partitions=1)
    handled: list[str] = []

    async def handle(event: Envelope[Any]) -> None:
        if event.data.user_id == "u-bad":
            raise ValueError("cannot send a welcome mail")
        handled.append(event.data.user_id)

    bus.subscribe("email", handle)
    unknown = json.loads(user(9).to_json()) | {"type": "user.vanished"}
    async with bus:
        await bus.publish(user(1))
        await bus.publish_raw("t.users", b"{not json", key=b"k")
        await bus.publish_raw("t.users", json.dumps(unknown).encode())
        await bus.publish_raw("t.users", None)
        bad = Envelope.wrap(
            UserCreated(user_id="u-bad", username="b", email="b@x.io"), source="tests"
        )
        await bus.publish(bad)
        await bus.publish(user(2))
        await drained(bus)
    assert handled == ["u1", "u2"]
    letters = bus.dead_letters()
    assert [letter.error for letter in letters] == [
        "MalformedEvent",
        "UnknownEventType",
        "MalformedEvent",
        "ValueError",
    ]
    assert letters[0].value == b"{not json"
    assert letters[0].key == b"k"
    assert letters[0].topic == "t.users"
    assert letters[0].group == "email"
    assert letters[0].attempts == 0
    assert "user.vanished" in letters[1].reason
    assert letters[3].attempts == FAST.max_attempts
    assert "cannot send a welcome mail" in letters[3].reason
    assert letters[3].value == bad.to_json()
    assert bus.lag("email") == 0


async def test_types_filter_what_the_handler_sees() -> None:
    bus = InMemoryEventBus()
    got: list[str] = []

    async def handle(event: Envelope[Any]) -> None:
        got.append(event.type)

    bus.subscribe("g", handle, types=["user.created"])
    async with bus:
        await bus.publish_many([released("r1", 1), user(1)])
        await drained(bus)
    assert got == ["user.created"]
    assert bus.records("reservations")  # published, but on a topic the group does not read


async def test_stop_waits_for_the_running_handler_and_keeps_unhandled_events() -> None:
    bus = InMemoryEventBus(partitions=1)
    started = asyncio.Event()
    release = asyncio.Event()
    done: list[int] = []

    async def slow(event: Envelope[Any]) -> None:
        started.set()
        await release.wait()
        done.append(int(event.data.reason))

    bus.subscribe("g", slow)
    await bus.start()
    await bus.publish_many([released("r", 1), released("r", 2)])
    await started.wait()
    stopping = asyncio.create_task(bus.stop())
    await asyncio.sleep(0.01)
    assert not stopping.done()  # the handler is still running: stop waits
    release.set()
    await stopping
    assert done == [1]  # finished, not cut off; the second was not started
    assert bus.lag("g") == 1
    async with bus:  # the next start delivers what was left
        await drained(bus)
    assert done == [1, 2]


async def test_stop_during_a_retry_leaves_the_event_for_later() -> None:
    bus = InMemoryEventBus(retry=EventRetry(max_attempts=5, initial_backoff=30))
    attempts: list[str] = []
    tried = asyncio.Event()
    healthy = False

    async def handle(event: Envelope[Any]) -> None:
        attempts.append(event.id)
        tried.set()
        if not healthy:
            raise RuntimeError("down")

    bus.subscribe("g", handle)
    await bus.start()
    await bus.publish(user(1))
    async with asyncio.timeout(5):
        await tried.wait()
        await bus.stop()  # does not wait for the 30 s backoff
    assert bus.lag("g") == 1
    assert bus.dead_letters() == []
    healthy = True
    async with bus:
        await drained(bus)
    assert len(attempts) == 2
    assert bus.lag("g") == 0


async def test_subscribing_to_an_unknown_type_fails() -> None:
    bus = InMemoryEventBus()

    async def handle(event: Envelope[Any]) -> None:
        pass

    with pytest.raises(UnknownEventType):
        bus.subscribe("g", handle, types=["nothing.happened"])


async def test_an_outage_is_waited_out_not_dead_lettered() -> None:
    bus = InMemoryEventBus(retry=FAST)
    outage = iter(range(10))  # ten failures: far beyond max_attempts=3
    handled: list[str] = []

    async def handle(event: Envelope[Any]) -> None:
        if next(outage, None) is not None:
            raise BackendUnavailable("redis unreachable")
        handled.append(event.data.user_id)

    bus.subscribe("inventory", handle)
    async with bus:
        await bus.publish(user(1))
        await drained(bus)
    assert handled == ["u1"]
    assert bus.dead_letters() == []


async def test_the_transient_errors_are_the_policys_to_choose() -> None:
    bus = InMemoryEventBus(retry=EventRetry(max_attempts=2, initial_backoff=0, transient=()))
    calls = 0

    async def handle(event: Envelope[Any]) -> None:
        nonlocal calls
        calls += 1
        raise BackendUnavailable("down")

    bus.subscribe("inventory", handle)
    async with bus:
        await bus.publish(user(1))
        await drained(bus)
    assert calls == 2
    assert [letter.error for letter in bus.dead_letters()] == ["BackendUnavailable"]
