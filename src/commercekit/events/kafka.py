"""`KafkaEventBus`: the `EventBus` on Apache Kafka, with aiokafka.

```python
bus = KafkaEventBus("kafka:9092", topics=TopicNames(prefix="shop."))
await create_topics("kafka:9092", topics=bus.topics, partitions=6)
bus.subscribe("inventory", on_payment, types=["payment.confirmed", "payment.failed"])
async with bus:
    await bus.publish(Envelope.wrap(payload, source="payments"))
```

Producer: idempotent, ``acks=all``; the key is the event's partition key, the
value the envelope's JSON (CloudEvents structured mode), the headers its
content type and trace context (``traceparent``, ``tracestate``). Consumers: one
aiokafka consumer per subscription, auto-commit off; offsets are committed
after the handlers returned, after each batch and before a rebalance takes
partitions away. See `commercekit.events.bus` for the full semantics.

Needs ``commercekit[kafka]``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from commercekit._lifecycle import AsyncLifecycle
from commercekit.errors import (
    BackendUnavailable,
    ConfigurationError,
    MissingExtraError,
    PublishError,
)
from commercekit.events._dispatch import check_group
from commercekit.events.bus import DeadLetter, EventRetry, Handler
from commercekit.events.catalog import TopicNames
from commercekit.events.envelope import Envelope

try:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaError

    from commercekit.events._kafka_consumer import ConsumerConfig, GroupConsumer
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtraError("kafka", __name__) from exc

__all__ = ["KafkaEventBus", "create_topics"]

log = logging.getLogger("commercekit.events")

_TOPIC_ALREADY_EXISTS = 36


async def create_topics(
    bootstrap_servers: str | list[str],
    *,
    topics: TopicNames | None = None,
    partitions: int | Mapping[str, int] = 3,
    replication_factor: int = 1,
    dead_letter_partitions: int = 1,
    patience: float = 60.0,
) -> dict[str, int]:
    """Create the catalog's topics and the dead-letter topic; keep those that exist.

    Each attempt gives the brokers a few seconds, and a timed-out one is
    tried again with fresh metadata: the admin request goes to
    the broker the metadata names as controller, which may be a dead broker
    the cluster has not fenced yet, and waiting out a long request timeout on
    it would hold a starting service for nothing.

    Args:
        bootstrap_servers: the brokers.
        topics: the topic names (and the catalog).
        partitions: partitions of every topic, or per logical topic (3 if absent).
        replication_factor: copies of each partition (3 in production).
        dead_letter_partitions: partitions of the dead-letter topic.
        patience: seconds to keep trying before giving up.

    Returns:
        Every topic's real name and its partition count on the broker.

    Raises:
        BackendUnavailable: the brokers cannot be reached or refused a topic.
    """
    names = topics or TopicNames()
    wanted = {
        names.topic(logical): (
            partitions if isinstance(partitions, int) else partitions.get(logical, 3)
        )
        for logical in names.catalog.topics
    }
    wanted[names.dead_letter_topic] = dead_letter_partitions
    deadline = asyncio.get_running_loop().time() + patience
    while True:
        try:
            async with asyncio.timeout(_ADMIN_ATTEMPT_S):
                return await _create_once(bootstrap_servers, wanted, replication_factor)
        except (KafkaError, TimeoutError) as exc:
            retriable = not isinstance(exc, KafkaError) or getattr(exc, "retriable", False)
            if not retriable or asyncio.get_running_loop().time() >= deadline:
                raise BackendUnavailable(f"cannot create the topics: {exc!r}") from exc
            log.info("creating topics: %r; trying again", exc)
            await asyncio.sleep(0.5)


_ADMIN_REQUEST_MS = 3_000
"""How long one admin request waits for a broker."""
_ADMIN_ATTEMPT_S = 5.0
"""How long one attempt (connect, create, describe) may take before it is tried again."""


async def _create_once(
    bootstrap_servers: str | list[str], wanted: dict[str, int], replication_factor: int
) -> dict[str, int]:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=_ADMIN_REQUEST_MS
    )
    try:
        await admin.start()
        response = await admin.create_topics(
            [
                NewTopic(name=name, num_partitions=count, replication_factor=replication_factor)
                for name, count in wanted.items()
            ]
        )
        for topic, code, *message in response.topic_errors:
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                raise BackendUnavailable(f"cannot create topic {topic}: error {code} {message}")
        described = await admin.describe_topics(list(wanted))
    finally:
        await admin.close()
    return {t["topic"]: len(t["partitions"]) for t in described}


class KafkaEventBus(AsyncLifecycle):
    """An `EventBus` on Kafka.

    Args:
        bootstrap_servers: the brokers (``"host:9092"`` or a list).
        topics: the topic names (and the catalog).
        retry: the retry policy of the handlers.
        client_id: names this client in the brokers' logs.
        request_timeout_ms: how long a publish waits for the brokers.
        session_timeout_ms: how long before a silent consumer is declared dead.
        heartbeat_interval_ms: how often a consumer tells the group it is alive.
        max_poll_records: the largest batch a consumer handles between commits.
        not_ready_wait: how long, in seconds, an event whose handler raises
            `NotReadyYet` (without a `wait` of its own) may wait, its
            partition parked, before it is dead-lettered.
        metadata_max_age_ms: how old the clients' cluster metadata may get before
            they read it again. A fetch from a broker that died only fails and
            retries; the partition's new leader is found at the next metadata
            read, so this bounds how long a consumer stays stuck after a broker
            is lost (the clients' own default is 5 minutes).
        producer_options: more `AIOKafkaProducer` arguments (overrides).
        consumer_options: more `AIOKafkaConsumer` arguments (overrides).
    """

    def __init__(
        self,
        bootstrap_servers: str | list[str],
        *,
        topics: TopicNames | None = None,
        retry: EventRetry | None = None,
        client_id: str = "commercekit",
        request_timeout_ms: int = 30_000,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 1_000,
        max_poll_records: int = 500,
        not_ready_wait: float = 60.0,
        metadata_max_age_ms: int = 10_000,
        producer_options: Mapping[str, Any] | None = None,
        consumer_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topics = topics or TopicNames()
        self.catalog = self.topics.catalog
        self.retry = retry or EventRetry()
        self.client_id = client_id
        self.not_ready_wait = not_ready_wait
        self._producer_options: dict[str, Any] = {
            "bootstrap_servers": bootstrap_servers,
            "client_id": client_id,
            "acks": "all",
            "enable_idempotence": True,
            "request_timeout_ms": request_timeout_ms,
            "linger_ms": 5,
            "metadata_max_age_ms": metadata_max_age_ms,
            **(producer_options or {}),
        }
        self._consumer_options: dict[str, Any] = {
            "bootstrap_servers": bootstrap_servers,
            "client_id": client_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "session_timeout_ms": session_timeout_ms,
            "heartbeat_interval_ms": heartbeat_interval_ms,
            "max_poll_records": max_poll_records,
            "metadata_max_age_ms": metadata_max_age_ms,
            **(consumer_options or {}),
        }
        if (
            self._producer_options["acks"] != "all"
            or not self._producer_options["enable_idempotence"]
        ):
            raise ConfigurationError("KafkaEventBus always publishes with acks=all, idempotently")
        self._producer: AIOKafkaProducer | None = None
        self._producer_lock = asyncio.Lock()
        self._consumers: list[GroupConsumer] = []
        self._tasks: dict[GroupConsumer, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()
        self._running = False

    # ------------------------------------------------------------ publishing
    async def publish(self, event: Envelope[Any]) -> None:
        """Publish one event (see `EventBus.publish`)."""
        await self.publish_many([event])

    async def publish_many(self, events: Sequence[Envelope[Any]]) -> None:
        """Publish events in order, wait for every acknowledgement (see `EventBus`).

        An event without a ``traceparent`` gets the current trace context's;
        it travels in the envelope and as the record's ``traceparent`` header.
        """
        stamped = [e.in_trace() for e in events]
        await self._send(
            [
                (self.topics.for_type(e.type), e.key.encode(), e.to_json(), e.headers())
                for e in stamped
            ]
        )

    async def _send(self, records: list[tuple[str, bytes | None, bytes | None, Any]]) -> None:
        producer = await self._started_producer()
        futures: list[asyncio.Future[Any]] = []
        try:
            for topic, key, value, headers in records:
                futures.append(await producer.send(topic, value=value, key=key, headers=headers))
        except KafkaError as exc:
            await self._give_up(futures, exc)
        results = await asyncio.gather(*futures, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            await self._give_up([], failed[0])

    async def _give_up(self, futures: list[asyncio.Future[Any]], exc: BaseException) -> None:
        await asyncio.gather(*futures, return_exceptions=True)
        await self._reset_producer()
        raise PublishError(f"Kafka did not acknowledge the events: {exc!r}") from exc

    async def _started_producer(self) -> AIOKafkaProducer:
        async with self._producer_lock:
            if self._producer is None:
                producer = AIOKafkaProducer(**self._producer_options)
                try:
                    await producer.start()
                except KafkaError as exc:
                    await producer.stop()
                    raise PublishError(f"cannot reach Kafka: {exc!r}") from exc
                self._producer = producer
            return self._producer

    async def _reset_producer(self) -> None:
        # A failed batch can leave the idempotent producer's sequence numbers
        # out of step; a new producer (a new producer id) starts clean.
        async with self._producer_lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await producer.stop()
            except KafkaError as exc:  # pragma: no cover - closing a dead connection
                log.debug("closing the failed producer: %r", exc)

    async def dead_letter(self, letter: DeadLetter) -> None:
        """Put a message on the dead-letter topic (the consumers do it for you).

        Raises:
            PublishError: the broker did not acknowledge it.
        """
        await self._send(
            [(self.topics.dead_letter_topic, letter.key, letter.value, letter.headers())]
        )

    # ------------------------------------------------------------ consuming
    def assignment(self) -> set[tuple[str, int]]:
        """The (topic, partition) pairs this bus's consumers own right now."""
        return {
            (tp.topic, tp.partition) for consumer in self._consumers for tp in consumer.assignment()
        }

    async def lag(self, group: str) -> int:
        """Messages on the partitions this bus owns in `group` that it has not fetched yet.

        The broker's high watermark (as last fetched) minus the consumer's
        position, over this process's partitions: sum it over the replicas
        for the group's lag. 0 before the first fetch.
        """
        return sum([await c.lag() for c in self._consumers if c.group == group])

    def deferred(self, group: str) -> int:
        """Events of `group` waiting, their partition parked, for their handler to be ready.

        One per partition at most: a handler raised `NotReadyYet` for the
        event, and the bus delivers it again later (the other partitions go on).
        """
        return sum(c.deferred() for c in self._consumers if c.group == group)

    def subscribe(
        self, group: str, handler: Handler, *, types: Iterable[str] | None = None
    ) -> None:
        """Join consumer `group` (see `EventBus.subscribe`); starts now if the bus runs."""
        check_group(group)
        wanted = None if types is None else frozenset(types)
        chosen = self.catalog.types if wanted is None else tuple(wanted)
        logical = {self.catalog[t].topic for t in chosen}
        config = ConsumerConfig(
            group=group,
            topics=tuple(sorted(self.topics.topic(t) for t in logical)),
            types=wanted,
            catalog=self.catalog,
            retry=self.retry,
            not_ready_wait=self.not_ready_wait,
            options=MappingProxyType(dict(self._consumer_options)),
        )
        consumer = GroupConsumer(
            config, handler, stopping=self._stopping, dead_letter=self.dead_letter
        )
        self._consumers.append(consumer)
        if self._running:
            self._tasks[consumer] = asyncio.create_task(consumer.run())

    async def start(self) -> None:
        """Connect the producer and start every subscription's consumer.

        Raises:
            BackendUnavailable: Kafka cannot be reached.
        """
        if self._running:
            return
        self._stopping.clear()
        try:
            await self._started_producer()
        except PublishError as exc:
            raise BackendUnavailable(str(exc)) from exc
        self._running = True
        for consumer in self._consumers:
            self._tasks[consumer] = asyncio.create_task(consumer.run())
        # Fail fast when a consumer cannot join; later failures are logged.
        await asyncio.gather(*(c.joined.wait() for c in self._consumers))
        for consumer, task in self._tasks.items():
            if task.done() and task.exception():
                await self.stop()
                raise BackendUnavailable(f"consumer of group {consumer.group} did not start")

    async def stop(self) -> None:
        """Let running handlers finish, commit, leave the groups, flush the producer."""
        if not self._running:
            return
        self._stopping.set()
        tasks, self._tasks = self._tasks, {}
        results = await asyncio.gather(*tasks.values(), return_exceptions=True)
        for consumer, result in zip(tasks, results, strict=True):
            if isinstance(result, Exception):
                log.error("consumer of group %s failed: %r", consumer.group, result)
        await self._reset_producer()
        self._running = False
