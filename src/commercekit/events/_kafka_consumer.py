"""One subscription of `KafkaEventBus`: an aiokafka consumer and its commits.

The consumer is given everything it needs, and reads nothing of its bus:

- a `ConsumerConfig` (frozen): its group, topics, event types, catalog,
  retry policy, ``NotReadyYet`` bound and aiokafka options;
- the bus's stop event, which ends its loop (a handler that runs finishes);
- a dead-letter callable, which publishes a `DeadLetter` or raises
  `PublishError` (the consumer retries it until it works or the bus stops).

The bus asks it only through its public methods: `run`, `joined`,
`assignment`, `lag` and `deferred`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.errors import IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition

from commercekit.errors import PublishError
from commercekit.events._deferral import Deferrals
from commercekit.events._dispatch import Delivery, Outcome, deliver, wait_or_stop
from commercekit.events.bus import DeadLetter, EventRetry, Handler
from commercekit.events.catalog import Catalog

__all__ = ["ConsumerConfig", "DeadLetterSink", "GroupConsumer"]

log = logging.getLogger("commercekit.events")

DeadLetterSink = Callable[[DeadLetter], Awaitable[None]]
"""Publishes a message to the dead-letter topic; raises `PublishError` if it cannot."""


@dataclass(frozen=True)
class ConsumerConfig:
    """What one subscription consumes, and how.

    Attributes:
        group: the consumer group.
        topics: the topics (real names) it reads.
        types: the event types its handler is called for; None for all.
        catalog: decodes the messages.
        retry: how a failing handler is called again.
        not_ready_wait: the bound of an event whose `NotReadyYet` names none, in seconds.
        options: the `AIOKafkaConsumer` arguments (brokers, timeouts, auto-commit off).
    """

    group: str
    topics: tuple[str, ...]
    types: frozenset[str] | None
    catalog: Catalog
    retry: EventRetry
    not_ready_wait: float
    options: Mapping[str, Any]


class GroupConsumer(ConsumerRebalanceListener):  # type: ignore[misc]
    """One subscription: an aiokafka consumer in a group, and its commit bookkeeping.

    Args:
        config: what it consumes, and how.
        handler: called with each event of its types.
        stopping: set when the bus stops; the loop ends, commits and leaves.
        dead_letter: publishes what cannot be handled.
    """

    def __init__(
        self,
        config: ConsumerConfig,
        handler: Handler,
        *,
        stopping: asyncio.Event,
        dead_letter: DeadLetterSink,
    ) -> None:
        self.config = config
        self.handler = handler
        self.joined = asyncio.Event()
        """Set once the consumer started (or failed to)."""
        self._stopping = stopping
        self._send_dead_letter = dead_letter
        self._kafka: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()  # held while a batch is handled and committed
        self._handled: dict[TopicPartition, int] = {}  # next offset to commit
        self._deferrals: Deferrals[TopicPartition] = Deferrals(config.retry, config.not_ready_wait)
        """The partitions paused on an event their handler is not ready for."""

    @property
    def group(self) -> str:
        """The consumer group."""
        return self.config.group

    # ------------------------------------------------------------ state
    def assignment(self) -> set[TopicPartition]:
        """The partitions this consumer owns right now (none before it runs)."""
        return set() if self._kafka is None else set(self._kafka.assignment())

    async def lag(self) -> int:
        """Messages on its partitions it has not fetched yet (high watermark minus position)."""
        kafka = self._kafka
        if kafka is None:
            return 0
        behind = 0
        for tp in kafka.assignment():
            end = kafka.highwater(tp)
            if end is None:
                continue
            try:
                position = await kafka.position(tp)
            except IllegalStateError:  # revoked by a rebalance meanwhile
                continue
            behind += max(end - position, 0)
        return behind

    def deferred(self) -> int:
        """Events waiting, their partition parked, for their handler to be ready."""
        return len(self._deferrals)

    # ------------------------------------------------------------ the loop
    async def run(self) -> None:
        """Join the group and handle batches until the stop event is set; then commit, leave."""
        consumer = AIOKafkaConsumer(group_id=self.config.group, **self.config.options)
        consumer.subscribe(list(self.config.topics), listener=self)
        self._kafka = consumer
        try:
            await consumer.start()
        except BaseException:
            self.joined.set()
            await consumer.stop()
            raise
        self.joined.set()
        try:
            while not self._stopping.is_set():
                self._resume_due(consumer)
                batch = await consumer.getmany(timeout_ms=200)
                if not batch:
                    continue
                async with self._lock:
                    await asyncio.gather(*(self._partition(tp, rs) for tp, rs in batch.items()))
                    await self._commit(set(batch))
        finally:
            try:
                async with self._lock, asyncio.timeout(10):
                    await self._commit(set(self._handled))
            except (TimeoutError, KafkaError) as exc:
                log.warning(
                    "group %s: last commit failed (redelivery follows): %r", self.group, exc
                )
            await consumer.stop()

    async def _partition(self, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        config = self.config
        for record in records:
            if self._stopping.is_set():
                return
            delivery = await deliver(
                record.value,
                catalog=config.catalog,
                handler=self.handler,
                types=config.types,
                retry=config.retry,
                stopping=self._stopping,
            )
            if delivery.outcome is Outcome.ABORTED:
                return
            if delivery.outcome is Outcome.DEFERRED:
                parked = self._deferrals.defer(tp, record.offset, delivery, self._name(record))
                if not parked.expired:
                    # Read this partition again from this event, once its pause is over.
                    assert self._kafka is not None
                    self._kafka.seek(tp, record.offset)
                    self._kafka.pause(tp)
                    return
                reason = parked.given_up(delivery.reason, self._deferrals.clock())
                delivery = Delivery(Outcome.DEAD, delivery.attempts, reason, delivery.error)
            if delivery.outcome is Outcome.DEAD:
                letter = DeadLetter(
                    value=record.value,
                    key=record.key,
                    reason=delivery.reason,
                    error=delivery.error,
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    group=config.group,
                    attempts=delivery.attempts,
                )
                if not await self._dead_letter(letter):
                    return
            self._deferrals.settled(tp, record.offset)
            self._handled[tp] = record.offset + 1

    def _name(self, record: ConsumerRecord) -> str:
        return f"group {self.group}: {record.topic}[{record.partition}]@{record.offset}"

    def _resume_due(self, consumer: AIOKafkaConsumer) -> None:
        """Read again the parked partitions whose pause is over."""
        due = self._deferrals.due()
        if due:
            owned = consumer.assignment()
            consumer.resume(*(tp for tp in due if tp in owned))

    async def _dead_letter(self, letter: DeadLetter) -> bool:
        """Publish to the dead-letter topic until it works; False if the bus stops first."""
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._send_dead_letter(letter)
            except PublishError as exc:
                log.warning("group %s: dead-lettering failed, retrying: %s", self.group, exc)
                if await wait_or_stop(self._stopping, self.config.retry.backoff(attempt)):
                    return False
            else:
                return True

    async def _commit(self, partitions: set[TopicPartition]) -> None:
        assert self._kafka is not None
        offsets = {tp: self._handled[tp] for tp in partitions if tp in self._handled}
        if not offsets:
            return
        try:
            await self._kafka.commit(offsets)
        except KafkaError as exc:
            # A rebalance is under way: on_partitions_revoked commits again.
            log.info("group %s: commit failed: %r", self.group, exc)
            return
        for tp, offset in offsets.items():
            if self._handled.get(tp) == offset:
                del self._handled[tp]

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Wait for the running batch, then commit what was handled on these partitions."""
        async with self._lock:
            await self._commit(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Forget progress on partitions that now belong to another member."""
        for tp in list(self._handled):
            if tp not in assigned:
                del self._handled[tp]
        self._deferrals.keep_only(set(assigned))
