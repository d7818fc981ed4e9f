"""`NotReadyYet` on Kafka: its partition is parked, the others go on, the wait is bounded."""

from __future__ import annotations

import time
import uuid
from typing import Any

from aiokafka.partitioner import DefaultPartitioner

from commercekit.errors import NotReadyYet
from commercekit.events import Envelope, KafkaEventBus, create_topics
from commercekit.testing.servers import KafkaServer

from .helpers import Ticked, dead_letters, poll, unique_topics

PARTITIONS = 3


def key_on(partition: int) -> str:
    """A key the producer puts on `partition` of the ticks topic."""
    partitions = list(range(PARTITIONS))
    while True:
        key = f"k-{uuid.uuid4().hex[:8]}"
        if DefaultPartitioner()(key.encode(), partitions, partitions) == partition:
            return key


async def test_a_not_ready_event_parks_its_partition_only_then_is_handled_or_dead_lettered(
    kafka_server: KafkaServer,
) -> None:
    bootstrap = kafka_server.bootstrap_servers
    topics = unique_topics()
    await create_topics(bootstrap, topics=topics, partitions=PARTITIONS)
    waiting, flowing, hopeless = key_on(0), key_on(1), key_on(2)
    ready: set[str] = set()
    handled: list[tuple[str, int]] = []

    async def handle(event: Envelope[Any]) -> None:
        key = event.data.key
        if key == hopeless:
            raise NotReadyYet(f"{key} never gets ready", wait=2.0)
        if key == waiting and key not in ready:
            raise NotReadyYet(f"{key} waits for its other event")
        handled.append((key, event.data.seq))

    bus = KafkaEventBus(bootstrap, topics=topics, session_timeout_ms=6000, not_ready_wait=60)
    group = f"g-{uuid.uuid4().hex[:8]}"
    bus.subscribe(group, handle, types=["test.ticked"])
    async with bus:
        await bus.publish_many(
            [Envelope.wrap(Ticked(key=waiting, seq=n), source="tests") for n in range(3)]
        )
        await poll(lambda: bus.deferred(group) == 1, within=30)
        await bus.publish_many(
            [Envelope.wrap(Ticked(key=flowing, seq=n), source="tests") for n in range(5)]
        )
        await poll(lambda: len(handled) == 5, within=30)  # the other partition flowed
        assert handled == [(flowing, n) for n in range(5)]
        assert bus.deferred(group) == 1

        ready.add(waiting)  # its other event is in: the parked partition goes on, in order
        await poll(lambda: len(handled) == 8, within=30)
        assert handled[5:] == [(waiting, n) for n in range(3)]
        assert bus.deferred(group) == 0

        started = time.monotonic()
        await bus.publish(Envelope.wrap(Ticked(key=hopeless, seq=0), source="tests"))
        [letter] = await dead_letters(bootstrap, topics, 1)
        assert time.monotonic() - started >= 1.5
        assert letter.error == "NotReadyYet"
        assert letter.group == group
        assert letter.reason.startswith("not ready after waiting")
        assert "(bound 2 s)" in letter.reason
        assert f"{hopeless} never gets ready" in letter.reason
        await poll(lambda: bus.deferred(group) == 0, within=10)
    assert len(handled) == 8
