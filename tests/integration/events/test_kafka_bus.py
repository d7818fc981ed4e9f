"""KafkaEventBus on a real broker: topic creation, two clients sharing a group, lag.

The `EventBus` behaviour itself is the contract's (test_kafka_contract.py).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from typing import Any

import redis.asyncio as aioredis

from commercekit.events import (
    Envelope,
    EventBus,
    KafkaEventBus,
    RedisProcessedEventStore,
    create_topics,
    idempotent,
)
from commercekit.testing.servers import KafkaServer, RedisServer

from .helpers import Ticked, poll, unique_topics

EVENTS = 5_000
KEYS = 50


def tick(key: str, seq: int) -> Envelope[Ticked]:
    return Envelope.wrap(Ticked(key=key, seq=seq), source="tests")


async def test_create_topics_gives_each_topic_its_partitions(kafka_server: KafkaServer) -> None:
    topics = unique_topics()
    counts = await create_topics(
        kafka_server.bootstrap_servers, topics=topics, partitions={"ticks": 3, "users": 2}
    )
    assert counts[topics.topic("ticks")] == 3
    assert counts[topics.topic("users")] == 2
    assert counts[topics.topic("reservations")] == 3
    assert counts[topics.dead_letter_topic] == 1
    again = await create_topics(kafka_server.bootstrap_servers, topics=topics, partitions=5)
    assert again == counts  # existing topics are kept as they are


async def test_two_consumers_share_5000_events_once_each_in_key_order(
    kafka_server: KafkaServer, redis_server: RedisServer
) -> None:
    bootstrap = kafka_server.bootstrap_servers
    topics = unique_topics()
    await create_topics(bootstrap, topics=topics, partitions=3)
    group = f"g-{uuid.uuid4().hex[:8]}"
    client = aioredis.from_url(redis_server.url)
    store = RedisProcessedEventStore(client, prefix=f"{group}:")
    effects: list[tuple[int, str, int]] = []  # (consumer, key, seq), in the order of effect
    event_ids: dict[str, int] = defaultdict(int)

    def handler(index: int) -> Any:
        async def handle(event: Envelope[Any]) -> None:
            effects.append((index, event.data.key, event.data.seq))
            event_ids[event.id] += 1

        return idempotent(store, group, handle)

    buses = [
        KafkaEventBus(bootstrap, topics=topics, client_id=f"c{i}", session_timeout_ms=6000)
        for i in range(2)
    ]
    for index, bus in enumerate(buses):
        bus.subscribe(group, handler(index), types=["test.ticked"])
    try:
        for bus in buses:
            await bus.start()
        assert all(isinstance(bus, EventBus) for bus in buses)

        def balanced() -> bool:
            owned = [bus.assignment() for bus in buses]
            return all(owned) and len(owned[0] | owned[1]) == sum(map(len, owned)) == 3

        await poll(balanced)
        events = [tick(f"res-{i % KEYS}", i // KEYS) for i in range(EVENTS)]
        await buses[0].publish_many(events)
        await poll(lambda: len(effects) >= EVENTS)
        await asyncio.sleep(0.2)  # anything extra would show up now
    finally:
        for bus in buses:
            await bus.stop()
        await client.aclose()

    assert len(effects) == EVENTS
    assert sorted(event_ids) == sorted(e.id for e in events)
    assert set(event_ids.values()) == {1}
    per_key: dict[str, list[int]] = defaultdict(list)
    for _, key, seq in effects:
        per_key[key].append(seq)
    assert per_key == {f"res-{k}": list(range(EVENTS // KEYS)) for k in range(KEYS)}
    assert {index for index, _, _ in effects} == {0, 1}  # both members did work


async def test_lag_counts_what_the_group_has_not_fetched_yet(kafka_server: KafkaServer) -> None:
    bootstrap = kafka_server.bootstrap_servers
    topics = unique_topics()
    await create_topics(bootstrap, topics=topics, partitions=1)
    group = f"g-{uuid.uuid4().hex[:8]}"
    started, release = asyncio.Event(), asyncio.Event()
    handled: list[int] = []

    async def handle(event: Envelope[Any]) -> None:
        started.set()
        await release.wait()
        handled.append(event.data.seq)

    bus = KafkaEventBus(bootstrap, topics=topics, client_id="lag", max_poll_records=1)
    bus.subscribe(group, handle, types=["test.ticked"])
    async with bus:
        await bus.publish_many([tick("k", seq) for seq in range(20)])
        await asyncio.wait_for(started.wait(), 30)
        assert await bus.lag(group) == 19  # one fetched and in the handler, nineteen waiting
        assert await bus.lag("another-group") == 0
        release.set()
        await poll(lambda: len(handled) == 20, within=30)
        assert await bus.lag(group) == 0
