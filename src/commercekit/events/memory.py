"""`InMemoryEventBus`: the `EventBus` semantics in one process, without a broker.

```python
bus = InMemoryEventBus()
bus.subscribe("email", send_welcome, types=["user.created"])
async with bus:
    await bus.publish(Envelope.wrap(UserCreated(...), source="users"))
    await bus.drain()  # every subscription has handled everything published so far
```

It keeps partitioned topic logs and committed offsets per consumer group,
encodes every event to JSON and decodes it for the consumer (so strict
(de)serialization, retries and the dead-letter topic behave as on Kafka),
and keeps its state across `stop` and `start`. It is what the embedded mode
and fast unit tests use. The state lives in memory only: it is lost with
the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from commercekit._lifecycle import AsyncLifecycle
from commercekit.errors import ConfigurationError
from commercekit.events._deferral import Deferrals
from commercekit.events._dispatch import Delivery, Outcome, check_group, deliver
from commercekit.events.bus import DeadLetter, EventRetry, Handler
from commercekit.events.catalog import TopicNames
from commercekit.events.envelope import Envelope

__all__ = ["InMemoryEventBus", "Record"]


@dataclass(frozen=True, slots=True)
class Record:
    """One message of an in-memory topic."""

    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(eq=False)
class _Subscription:
    group: str
    handler: Handler
    types: frozenset[str] | None
    topics: tuple[str, ...]
    deferrals: Deferrals[tuple[str, int]]
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class InMemoryEventBus(AsyncLifecycle):
    """An `EventBus` whose topics are lists in memory.

    Args:
        topics: the topic names (and the catalog).
        partitions: partitions per topic; a key always maps to the same one.
        retry: the retry policy of the handlers.
        not_ready_wait: how long, in seconds, an event whose handler raises
            `NotReadyYet` (without a `wait` of its own) may wait, its
            partition parked, before it is dead-lettered.
    """

    def __init__(
        self,
        *,
        topics: TopicNames | None = None,
        partitions: int = 3,
        retry: EventRetry | None = None,
        not_ready_wait: float = 60.0,
    ) -> None:
        if partitions < 1:
            raise ConfigurationError("a topic has at least one partition")
        self.topics = topics or TopicNames()
        self.catalog = self.topics.catalog
        self.partitions = partitions
        self.retry = retry or EventRetry(initial_backoff=0.01, max_backoff=0.1)
        self.not_ready_wait = not_ready_wait
        self._logs: dict[str, list[list[Record]]] = {}
        self._committed: dict[tuple[str, str, int], int] = {}
        self._locks: dict[tuple[str, str, int], asyncio.Lock] = {}
        self._subscriptions: list[_Subscription] = []
        self._changed = asyncio.Condition()
        self._stopping = asyncio.Event()
        self._running = False

    # ------------------------------------------------------------ publishing
    async def publish(self, event: Envelope[Any]) -> None:
        """Append one event to its topic (see `EventBus.publish`)."""
        await self.publish_many([event])

    async def publish_many(self, events: Sequence[Envelope[Any]]) -> None:
        """Append events to their topics, in order (see `EventBus.publish_many`).

        An event without a ``traceparent`` gets the current trace context's.
        """
        for event in events:
            stamped = event.in_trace()
            topic = self.topics.for_type(stamped.type)
            record = Record(stamped.key.encode(), stamped.to_json(), tuple(stamped.headers()))
            self._append(topic, record)
        await self._notify()

    async def publish_raw(self, topic: str, value: bytes | None, key: bytes | None = None) -> None:
        """Append arbitrary bytes to a topic (a real name): how tests send poison."""
        self._append(topic, Record(key, value))
        await self._notify()

    def _append(self, topic: str, record: Record) -> None:
        partitions = self._logs.setdefault(topic, [[] for _ in range(self.partitions)])
        index = zlib.crc32(record.key) % self.partitions if record.key is not None else 0
        partitions[index].append(record)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # ------------------------------------------------------------ reading back
    def records(self, topic: str) -> list[Record]:
        """Every record of a topic (a real name), partition after partition."""
        return [record for part in self._logs.get(topic, []) for record in part]

    def dead_letters(self) -> list[DeadLetter]:
        """Every message on the dead-letter topic so far."""
        return [
            DeadLetter.from_record(r.value, r.key, r.headers)
            for r in self.records(self.topics.dead_letter_topic)
        ]

    def lag(self, group: str) -> int:
        """How many messages of its topics the group has not committed yet."""
        topics = {t for s in self._subscriptions if s.group == group for t in s.topics}
        return sum(
            len(log) - self._committed.get((group, topic, index), 0)
            for topic in topics
            for index, log in enumerate(self._logs.get(topic, []))
        )

    async def drain(self) -> None:
        """Wait until every subscription has handled everything published so far.

        Bound the wait with ``asyncio.timeout`` if the handlers may never succeed.
        """
        async with self._changed:
            await self._changed.wait_for(
                lambda: all(self.lag(group) == 0 for group in self._groups())
            )

    def deferred(self, group: str) -> int:
        """Events of `group` waiting, their partition parked, for their handler to be ready."""
        return sum(len(s.deferrals) for s in self._subscriptions if s.group == group)

    def _groups(self) -> set[str]:
        return {s.group for s in self._subscriptions}

    # ------------------------------------------------------------ consuming
    def subscribe(
        self, group: str, handler: Handler, *, types: Iterable[str] | None = None
    ) -> None:
        """Join consumer `group` (see `EventBus.subscribe`)."""
        check_group(group)
        wanted = None if types is None else frozenset(types)
        chosen = self.catalog.types if wanted is None else tuple(wanted)
        logical = {self.catalog[t].topic for t in chosen}
        subscription = _Subscription(
            group,
            handler,
            wanted,
            tuple(sorted(self.topics.topic(t) for t in logical)),
            Deferrals(self.retry, self.not_ready_wait),
        )
        self._subscriptions.append(subscription)
        if self._running:
            subscription.task = asyncio.create_task(self._consume(subscription))

    async def start(self) -> None:
        """Start a consumer task per subscription."""
        if self._running:
            return
        self._running = True
        self._stopping.clear()
        for subscription in self._subscriptions:
            subscription.task = asyncio.create_task(self._consume(subscription))

    async def stop(self) -> None:
        """Let running handlers finish, then end the consumer tasks."""
        if not self._running:
            return
        self._stopping.set()
        await self._notify()
        tasks = [s.task for s in self._subscriptions if s.task is not None]
        for subscription in self._subscriptions:
            subscription.task = None
        await asyncio.gather(*tasks)
        self._running = False

    def _owned(self, subscription: _Subscription, topic: str) -> list[int]:
        members = [s for s in self._subscriptions if s.group == subscription.group]
        members = [s for s in members if topic in s.topics]
        index = members.index(subscription)
        return [p for p in range(self.partitions) if p % len(members) == index]

    async def _consume(self, subscription: _Subscription) -> None:
        while not self._stopping.is_set():
            progressed = False
            for topic in subscription.topics:
                for partition in self._owned(subscription, topic):
                    progressed |= await self._consume_partition(subscription, topic, partition)
                    if self._stopping.is_set():
                        return
            if not progressed:
                # The timeout covers a change of members between two checks, and the end
                # of a parked event's pause.
                pause = subscription.deferrals.next_due()
                timeout = 0.5 if pause is None else min(0.5, pause)
                async with self._changed:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), timeout)

    async def _consume_partition(self, sub: _Subscription, topic: str, partition: int) -> bool:
        slot = (sub.group, topic, partition)
        progressed = False
        if sub.deferrals.waiting((topic, partition)):
            return False  # parked: its event's pause is not over
        async with self._locks.setdefault(slot, asyncio.Lock()):
            log = self._logs.get(topic, [[]] * self.partitions)[partition]
            while not self._stopping.is_set() and self._committed.get(slot, 0) < len(log):
                offset = self._committed.get(slot, 0)
                record = log[offset]
                delivery = await deliver(
                    record.value,
                    catalog=self.catalog,
                    handler=sub.handler,
                    types=sub.types,
                    retry=self.retry,
                    stopping=self._stopping,
                )
                if delivery.outcome is Outcome.ABORTED:
                    break
                if delivery.outcome is Outcome.DEFERRED:
                    what = f"group {sub.group}: {topic}[{partition}]@{offset}"
                    parked = sub.deferrals.defer((topic, partition), offset, delivery, what)
                    if not parked.expired:
                        break  # the other partitions go on; this one waits
                    reason = parked.given_up(delivery.reason, sub.deferrals.clock())
                    delivery = Delivery(Outcome.DEAD, delivery.attempts, reason, delivery.error)
                if delivery.outcome is Outcome.DEAD:
                    letter = DeadLetter(
                        value=record.value,
                        key=record.key,
                        reason=delivery.reason,
                        error=delivery.error,
                        topic=topic,
                        partition=partition,
                        offset=offset,
                        group=sub.group,
                        attempts=delivery.attempts,
                    )
                    self._append(
                        self.topics.dead_letter_topic,
                        Record(record.key, record.value, tuple(letter.headers())),
                    )
                sub.deferrals.settled((topic, partition), offset)
                self._committed[slot] = offset + 1
                progressed = True
                await self._notify()
        return progressed
