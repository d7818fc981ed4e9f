"""One subscription of `KafkaEventBus`: an aiokafka consumer and its commits."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition

from commercekit.errors import PublishError
from commercekit.events._deferral import Deferrals
from commercekit.events._dispatch import Delivery, Outcome, deliver, wait_or_stop
from commercekit.events.bus import DeadLetter, Handler

if TYPE_CHECKING:
    from commercekit.events.kafka import KafkaEventBus

__all__ = ["GroupConsumer"]

log = logging.getLogger("commercekit.events")


class GroupConsumer(ConsumerRebalanceListener):  # type: ignore[misc]
    """One subscription: an aiokafka consumer in a group, and its commit bookkeeping."""

    def __init__(
        self,
        bus: KafkaEventBus,
        group: str,
        handler: Handler,
        types: frozenset[str] | None,
        topics: list[str],
    ) -> None:
        self.bus = bus
        self.group = group
        self.handler = handler
        self.types = types
        self.topics = topics
        self.task: asyncio.Task[None] | None = None
        self.joined = asyncio.Event()
        self.kafka: AIOKafkaConsumer | None = None
        """The aiokafka consumer, once running."""
        self._lock = asyncio.Lock()  # held while a batch is handled and committed
        self._handled: dict[TopicPartition, int] = {}  # next offset to commit
        self.deferrals: Deferrals[TopicPartition] = Deferrals(bus.retry, bus.not_ready_wait)
        """The partitions paused on an event their handler is not ready for."""

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(group_id=self.group, **self.bus._consumer_options)
        consumer.subscribe(self.topics, listener=self)
        self.kafka = consumer
        try:
            await consumer.start()
        except BaseException:
            self.joined.set()
            await consumer.stop()
            raise
        self.joined.set()
        stopping = self.bus._stopping
        try:
            while not stopping.is_set():
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
        stopping = self.bus._stopping
        for record in records:
            if stopping.is_set():
                return
            delivery = await deliver(
                record.value,
                catalog=self.bus.catalog,
                handler=self.handler,
                types=self.types,
                retry=self.bus.retry,
                stopping=stopping,
            )
            if delivery.outcome is Outcome.ABORTED:
                return
            if delivery.outcome is Outcome.DEFERRED:
                parked = self.deferrals.defer(tp, record.offset, delivery, self._name(record))
                if not parked.expired:
                    # Read this partition again from this event, once its pause is over.
                    assert self.kafka is not None
                    self.kafka.seek(tp, record.offset)
                    self.kafka.pause(tp)
                    return
                reason = parked.given_up(delivery.reason, self.deferrals.clock())
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
                    group=self.group,
                    attempts=delivery.attempts,
                )
                if not await self._dead_letter(letter):
                    return
            self.deferrals.settled(tp, record.offset)
            self._handled[tp] = record.offset + 1

    def _name(self, record: ConsumerRecord) -> str:
        return f"group {self.group}: {record.topic}[{record.partition}]@{record.offset}"

    def _resume_due(self, consumer: AIOKafkaConsumer) -> None:
        """Read again the parked partitions whose pause is over."""
        due = self.deferrals.due()
        if due:
            owned = consumer.assignment()
            consumer.resume(*(tp for tp in due if tp in owned))

    async def _dead_letter(self, letter: DeadLetter) -> bool:
        """Publish to the dead-letter topic until it works; False if the bus stops first."""
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.bus.dead_letter(letter)
            except PublishError as exc:
                log.warning("group %s: dead-lettering failed, retrying: %s", self.group, exc)
                if await wait_or_stop(self.bus._stopping, self.bus.retry.backoff(attempt)):
                    return False
            else:
                return True

    async def _commit(self, partitions: set[TopicPartition]) -> None:
        assert self.kafka is not None
        offsets = {tp: self._handled[tp] for tp in partitions if tp in self._handled}
        if not offsets:
            return
        try:
            await self.kafka.commit(offsets)
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
        self.deferrals.keep_only(set(assigned))
