"""`EventBusContract`: one test suite that every `EventBus` must pass.

Subclass it once per bus. Provide the `make_bus` fixture (a callable that
builds a bus on this test's `topics` with the retry policy it is given) and
the two ways to reach past the protocol: `publish_raw` (put bytes on a topic,
as a broken producer would) and `dead_letters` (read the dead-letter topic)::

    class TestMyBus(EventBusContract):
        @pytest.fixture
        def make_bus(self, topics: TopicNames) -> BusFactory:
            return lambda retry: MyEventBus(topics=topics, retry=retry)

        async def publish_raw(self, bus, topic, value, key):
            await bus.client.send(topic, value=value, key=key)

        async def dead_letters(self, bus, expected):
            return await bus.read_dead_letters(expected)

The suite proves what `commercekit.events.bus` promises: every group sees
every event and its members share them; one key's events arrive in publish
order; a failing handler is retried, then dead-lettered; undecodable bytes
are dead-lettered at once; the consumer moves on and commits; a type filter
skips the rest; `stop` lets a running handler finish and leaves the
unhandled events for the next start; an outage (a transient error) is
waited out; an event a handler is not ready for is delivered again later,
or dead-lettered past its wait; a redelivered event, with an idempotent
handler, has no second effect.

A bus that needs time before its consumers own their partitions (a Kafka
group join) overrides `joined`; one that is slower than memory raises
`patience`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import json
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import pytest

from commercekit.errors import BackendUnavailable, NotReadyYet, UnknownEventType
from commercekit.events import (
    DeadLetter,
    Envelope,
    EventBus,
    EventLine,
    EventRetry,
    InMemoryProcessedEventStore,
    ReservationCreated,
    ReservationReleased,
    TopicNames,
    UserCreated,
    idempotent,
)

__all__ = ["FAST_RETRY", "BusFactory", "EventBusContract", "eventually"]

BusFactory = Callable[[EventRetry], EventBus]
"""Builds a new, stopped bus on the test's topics, retrying with the policy given."""

FAST_RETRY = EventRetry(max_attempts=3, initial_backoff=0.001, max_backoff=0.001)
"""Three attempts, a millisecond apart: what most tests of the suite run with."""

_LINES = (EventLine(sku="SKU-1", quantity=1),)


def _released(reservation: str, seq: int) -> Envelope[ReservationReleased]:
    """A ``reservation.released`` keyed by `reservation`, numbered `seq` (its reason)."""
    payload = ReservationReleased(
        reservation_id=reservation, owner="u", lines=_LINES, reason=str(seq)
    )
    return Envelope.wrap(payload, source="contract")


def _created(reservation: str) -> Envelope[ReservationCreated]:
    payload = ReservationCreated(
        reservation_id=reservation,
        owner="u",
        lines=_LINES,
        expires_at=dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
    )
    return Envelope.wrap(payload, source="contract")


def _user(n: int) -> Envelope[UserCreated]:
    payload = UserCreated(user_id=f"u{n}", username=f"n{n}", email=f"u{n}@example.com")
    return Envelope.wrap(payload, source="contract")


def _seq(event: Envelope[Any]) -> int:
    return int(event.data.reason)


async def eventually(
    check: Callable[[], bool] | Callable[[], Awaitable[bool]],
    *,
    within: float,
    every: float = 0.01,
) -> None:
    """Wait until `check()` is true; TimeoutError after `within` seconds."""
    async with asyncio.timeout(within):
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await asyncio.sleep(every)


class EventBusContract:
    """The behaviour every `EventBus` must show.

    Subclass and provide `make_bus`, `publish_raw` and `dead_letters`.
    """

    patience: ClassVar[float] = 10.0
    """Seconds a test waits for something the bus must do."""
    quiet: ClassVar[float] = 0.2
    """Seconds a test waits for something the bus must *not* do (an extra delivery)."""

    # ------------------------------------------------------------ the backend
    @pytest.fixture
    def topics(self) -> TopicNames:
        """Topic names no other test uses (the default catalog)."""
        return TopicNames(prefix=f"t{uuid.uuid4().hex[:10]}.")

    @pytest.fixture
    def make_bus(self, topics: TopicNames) -> BusFactory:
        """Abstract: build buses on `topics` (override in the subclass).

        Every topic needs at least two partitions (three is best); the
        dead-letter topic one.
        """
        raise NotImplementedError("provide a make_bus fixture")

    async def publish_raw(
        self, bus: EventBus, topic: str, value: bytes | None, key: bytes | None
    ) -> None:
        """Abstract: put `value` on `topic` (a real name) with `key`, as another producer would."""
        raise NotImplementedError("provide publish_raw")

    async def dead_letters(self, bus: EventBus, expected: int) -> list[DeadLetter]:
        """Abstract: the first `expected` messages of the dead-letter topic, in order.

        Wait for them (up to `patience`) if they are not all there yet.
        """
        raise NotImplementedError("provide dead_letters")

    async def joined(self, bus: EventBus) -> None:
        """Wait until every subscription of the running `bus` owns its share of partitions.

        Returns at once by default: right for a bus whose `start` assigns them.
        """

    # ------------------------------------------------------------- helpers
    async def _eventually(self, check: Callable[[], bool]) -> None:
        await eventually(check, within=self.patience)

    async def _stop_within(self, bus: EventBus) -> None:
        async with asyncio.timeout(self.patience):
            await bus.stop()

    # ---------------------------------------------------------------- tests
    def test_it_is_an_event_bus(self, make_bus: BusFactory) -> None:
        """The bus satisfies the `EventBus` protocol."""
        assert isinstance(make_bus(FAST_RETRY), EventBus)

    def test_subscribing_to_an_unknown_type_fails(self, make_bus: BusFactory) -> None:
        """A type the catalog does not know is refused at `subscribe`."""
        bus = make_bus(FAST_RETRY)

        async def handle(event: Envelope[Any]) -> None:
            pass

        with pytest.raises(UnknownEventType):
            bus.subscribe("g", handle, types=["nothing.happened"])

    async def test_every_group_sees_every_event_and_one_group_shares_them(
        self, make_bus: BusFactory
    ) -> None:
        """Each group gets every event; the members of one group share them, each once."""
        bus = make_bus(FAST_RETRY)
        seen: dict[str, list[str]] = defaultdict(list)

        def recorder(name: str) -> Callable[[Envelope[Any]], Awaitable[None]]:
            async def handle(event: Envelope[Any]) -> None:
                seen[name].append(event.id)

            return handle

        bus.subscribe("email", recorder("email"))
        bus.subscribe("inventory", recorder("inventory-a"))
        bus.subscribe("inventory", recorder("inventory-b"))
        events = [_released(f"r{i % 30}", i) for i in range(200)]
        async with bus:
            await self.joined(bus)
            await bus.publish_many(events)
            await self._eventually(
                lambda: (
                    len(seen["email"]) >= 200
                    and len(seen["inventory-a"]) + len(seen["inventory-b"]) >= 200
                )
            )
            await asyncio.sleep(self.quiet)
        ids = sorted(e.id for e in events)
        assert sorted(seen["email"]) == ids
        assert sorted(seen["inventory-a"] + seen["inventory-b"]) == ids
        assert seen["inventory-a"], "one member of the group did nothing"
        assert seen["inventory-b"], "one member of the group did nothing"

    async def test_events_of_one_key_arrive_in_publish_order(self, make_bus: BusFactory) -> None:
        """Events of one key reach the handler in the order published, one at a time."""
        bus = make_bus(FAST_RETRY)
        order: dict[str, list[int]] = defaultdict(list)

        async def handle(event: Envelope[Any]) -> None:
            await asyncio.sleep(0)
            order[event.key].append(_seq(event))

        bus.subscribe("g", handle, types=["reservation.released"])
        async with bus:
            for i in range(100):  # one at a time, then in batches
                await bus.publish(_released(f"r{i % 7}", i))
            for start in range(100, 300, 50):
                await bus.publish_many(
                    [_released(f"r{i % 7}", i) for i in range(start, start + 50)]
                )
            await self._eventually(lambda: sum(map(len, order.values())) >= 300)
            await asyncio.sleep(self.quiet)
        assert order == {f"r{k}": list(range(k, 300, 7)) for k in range(7)}

    async def test_a_failing_handler_is_retried_then_succeeds(self, make_bus: BusFactory) -> None:
        """A handler that raises is called again, and not again once it returned."""
        bus = make_bus(FAST_RETRY)
        calls: list[str] = []

        async def flaky(event: Envelope[Any]) -> None:
            calls.append(event.id)
            if len(calls) < 3:
                raise RuntimeError("database hiccup")

        bus.subscribe("g", flaky, types=["user.created"])
        event = _user(1)
        async with bus:
            await bus.publish(event)
            await self._eventually(lambda: len(calls) >= 3)
            await asyncio.sleep(self.quiet)
        assert calls == [event.id] * 3  # the third call succeeded: no fourth

    async def test_poison_goes_to_the_dead_letter_topic_and_the_consumer_moves_on(
        self, make_bus: BusFactory, topics: TopicNames
    ) -> None:
        """Undecodable bytes and a handler that keeps failing are dead-lettered, then committed."""
        bus = make_bus(FAST_RETRY)
        topic = topics.for_type("reservation.released")
        handled: list[int] = []
        attempts: dict[int, int] = defaultdict(int)

        async def handle(event: Envelope[Any]) -> None:
            attempts[_seq(event)] += 1
            if _seq(event) == 2:
                raise RuntimeError("this one always fails")
            handled.append(_seq(event))

        bus.subscribe("poison", handle)
        unknown = json.loads(_released("k", 9).to_json()) | {"type": "reservation.vanished"}
        failing = _released("k", 2)
        async with bus:
            await bus.publish(_released("k", 1))
            await self.publish_raw(bus, topic, b"\x00\x01 not json", b"k")
            await self.publish_raw(bus, topic, json.dumps(unknown).encode(), b"k")
            await self.publish_raw(bus, topic, None, b"k")
            await bus.publish(failing)
            await bus.publish(_released("k", 3))
            await self._eventually(lambda: handled == [1, 3])
            letters = await self.dead_letters(bus, 4)
        assert [letter.error for letter in letters] == [
            "MalformedEvent",
            "UnknownEventType",
            "MalformedEvent",
            "RuntimeError",
        ]
        first = letters[0]
        assert (first.value, first.key, first.topic, first.group) == (
            b"\x00\x01 not json",
            b"k",
            topic,
            "poison",
        )
        assert {letter.partition for letter in letters} == {first.partition}
        assert [letter.offset for letter in letters] == [1, 2, 3, 4]
        assert [letter.attempts for letter in letters] == [0, 0, 0, FAST_RETRY.max_attempts]
        assert "reservation.vanished" in letters[1].reason
        assert "this one always fails" in letters[3].reason
        assert letters[3].value == failing.to_json()
        assert attempts[2] == FAST_RETRY.max_attempts

        # Everything, poison included, was committed: the next start goes on after it.
        async with bus:
            await bus.publish(_released("k", 4))
            await self._eventually(lambda: handled == [1, 3, 4])
            await asyncio.sleep(self.quiet)
        assert handled == [1, 3, 4]

    async def test_types_filter_what_the_handler_sees(self, make_bus: BusFactory) -> None:
        """Events of other types are skipped, and committed, without calling the handler."""
        bus = make_bus(FAST_RETRY)
        got: list[tuple[str, str]] = []

        async def handle(event: Envelope[Any]) -> None:
            got.append((event.type, event.data.reason))

        bus.subscribe("g", handle, types=["reservation.released"])
        async with bus:
            # reservation.created shares the released events' topic and key: skipped there
            await bus.publish_many([_created("r"), _released("r", 1), _user(1), _created("r")])
            await self._eventually(lambda: len(got) >= 1)
            await asyncio.sleep(self.quiet)
        assert got == [("reservation.released", "1")]
        # The skipped events were committed too: nothing comes again after a restart.
        async with bus:
            await bus.publish(_released("r", 2))
            await self._eventually(lambda: len(got) >= 2)
            await asyncio.sleep(self.quiet)
        assert got == [("reservation.released", "1"), ("reservation.released", "2")]

    async def test_stop_waits_for_the_running_handler_and_keeps_unhandled_events(
        self, make_bus: BusFactory
    ) -> None:
        """`stop` lets the running handler finish; the next start delivers the rest."""
        bus = make_bus(FAST_RETRY)
        started = asyncio.Event()
        release = asyncio.Event()
        done: list[int] = []

        async def slow(event: Envelope[Any]) -> None:
            started.set()
            await release.wait()
            done.append(_seq(event))

        bus.subscribe("g", slow, types=["reservation.released"])
        await bus.start()
        try:
            await bus.publish_many([_released("r", 1), _released("r", 2)])
            async with asyncio.timeout(self.patience):
                await started.wait()
            stopping = asyncio.create_task(bus.stop())
            await asyncio.sleep(0.05)
            assert not stopping.done()  # the handler is still running: stop waits
            release.set()
            async with asyncio.timeout(self.patience):
                await stopping
        finally:
            release.set()
            await self._stop_within(bus)
        assert done == [1]  # finished, not cut off; the second was not started
        async with bus:  # the next start delivers what was left, and only that
            await self._eventually(lambda: len(done) >= 2)
            await asyncio.sleep(self.quiet)
        assert done == [1, 2]

    async def test_stop_during_a_retry_leaves_the_event_for_later(
        self, make_bus: BusFactory
    ) -> None:
        """An event waiting for a retry at `stop` is neither committed nor dead-lettered."""
        bus = make_bus(EventRetry(max_attempts=5, initial_backoff=30, max_backoff=30))
        attempts: list[str] = []
        tried = asyncio.Event()
        healthy = False

        async def handle(event: Envelope[Any]) -> None:
            attempts.append(event.id)
            tried.set()
            if not healthy:
                raise RuntimeError("down")

        bus.subscribe("g", handle, types=["user.created"])
        event = _user(1)
        await bus.start()
        try:
            await bus.publish(event)
            async with asyncio.timeout(self.patience):
                await tried.wait()
            async with asyncio.timeout(min(self.patience, 20)):
                await bus.stop()  # does not wait for the 30 s backoff
        finally:
            await self._stop_within(bus)
        assert attempts == [event.id]
        healthy = True
        async with bus:  # neither committed nor dead-lettered: delivered again
            await self._eventually(lambda: len(attempts) >= 2)
            await asyncio.sleep(self.quiet)
        assert attempts == [event.id, event.id]

    async def test_an_outage_is_waited_out_not_dead_lettered(self, make_bus: BusFactory) -> None:
        """Transient errors are retried past `max_attempts` until the handler succeeds."""
        bus = make_bus(FAST_RETRY)
        outage = iter(range(10))  # ten failures: far beyond max_attempts=3
        calls = 0
        handled: list[str] = []

        async def handle(event: Envelope[Any]) -> None:
            nonlocal calls
            calls += 1
            if next(outage, None) is not None:
                raise BackendUnavailable("redis unreachable")
            handled.append(event.data.user_id)

        bus.subscribe("inventory", handle, types=["user.created"])
        async with bus:
            await bus.publish(_user(1))
            await self._eventually(lambda: bool(handled))
        assert handled == ["u1"]
        assert calls == 11

    async def test_the_transient_errors_are_the_policys_to_choose(
        self, make_bus: BusFactory
    ) -> None:
        """With ``transient=()`` an outage counts as a failure and is dead-lettered."""
        bus = make_bus(EventRetry(max_attempts=2, initial_backoff=0, transient=()))
        calls = 0

        async def handle(event: Envelope[Any]) -> None:
            nonlocal calls
            calls += 1
            raise BackendUnavailable("down")

        bus.subscribe("inventory", handle, types=["user.created"])
        async with bus:
            await bus.publish(_user(1))
            letters = await self.dead_letters(bus, 1)
            await asyncio.sleep(self.quiet)
        assert calls == 2
        assert [(letter.error, letter.attempts) for letter in letters] == [
            ("BackendUnavailable", 2)
        ]

    async def test_an_event_not_ready_is_delivered_again_or_dead_lettered_past_its_wait(
        self, make_bus: BusFactory
    ) -> None:
        """`NotReadyYet` parks an event: delivered again later, dead-lettered past its wait."""
        bus = make_bus(FAST_RETRY)
        tries: dict[int, int] = defaultdict(int)
        handled: list[int] = []

        async def handle(event: Envelope[Any]) -> None:
            seq = _seq(event)
            tries[seq] += 1
            if seq == 1 and tries[seq] < 3:
                raise NotReadyYet("waits for its other event")
            if seq == 2:
                raise NotReadyYet("never gets ready", wait=0.3)
            handled.append(seq)

        bus.subscribe("g", handle, types=["reservation.released"])
        hopeless = _released("r", 2)
        async with bus:
            await bus.publish_many([_released("r", 1), hopeless, _released("r", 3)])
            await self._eventually(lambda: handled == [1, 3])
            letters = await self.dead_letters(bus, 1)
        assert tries[1] == 3
        assert tries[2] >= 2  # delivered again until its wait was over
        assert letters[0].error == "NotReadyYet"
        assert letters[0].value == hopeless.to_json()
        assert "not ready after" in letters[0].reason
        assert "never gets ready" in letters[0].reason

    async def test_a_redelivered_event_has_no_second_effect_with_an_idempotent_handler(
        self, make_bus: BusFactory
    ) -> None:
        """A second copy of an event is delivered, and has no effect through `idempotent`."""
        bus = make_bus(FAST_RETRY)
        effects: list[int] = []
        seen: list[int] = []

        async def apply(event: Envelope[Any]) -> None:
            effects.append(_seq(event))

        handler = idempotent(InMemoryProcessedEventStore(), "inventory", apply)

        async def handle(event: Envelope[Any]) -> None:
            await handler(event)
            seen.append(_seq(event))

        bus.subscribe("inventory", handle, types=["reservation.released"])
        twice = _released("r", 1)
        async with bus:
            # the same event (one id) published twice, as a replayed outbox would
            await bus.publish_many([twice, twice, _released("r", 2)])
            await self._eventually(lambda: len(seen) >= 3)
            await asyncio.sleep(self.quiet)
        assert seen == [1, 1, 2]  # both copies were delivered
        assert effects == [1, 2]  # the second had no effect
