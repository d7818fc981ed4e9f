"""The outbox relay publishing through a broker that is stopped and restarted."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from commercekit.events import (
    Envelope,
    EventRetry,
    KafkaEventBus,
    Outbox,
    OutboxRelay,
    SqlProcessedEventStore,
    create_topics,
)
from commercekit.testing.servers import KafkaServer, free_port

from .helpers import TEST_CATALOG, Ticked, poll, read_topic, unique_topics

EVENTS = 1_200
KEYS = 20
PER_TRANSACTION = 10


async def pending(outbox: Outbox, sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return await outbox.pending(session)


async def all_sent(outbox: Outbox, sessions: async_sessionmaker[AsyncSession]) -> bool:
    return await pending(outbox, sessions) == 0


async def effects_done(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        done = await conn.scalar(text("SELECT count(*) FROM effects"))
    return done is not None and done >= EVENTS


async def test_no_event_is_lost_or_doubled_in_effect_across_a_broker_restart(
    tmp_path: Path, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # A private broker: stopping it cannot disturb the other tests.
    broker = KafkaServer(tmp_path / "kafka", port=free_port(), heap="512m")
    await asyncio.to_thread(broker.start)
    try:
        bootstrap = broker.bootstrap_servers
        topics = unique_topics()
        await create_topics(bootstrap, topics=topics, partitions=3)
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE orders (id serial PRIMARY KEY, n int)"))
            await conn.execute(
                text(
                    "CREATE TABLE effects (id bigserial PRIMARY KEY, event_id text, k text, s int)"
                )
            )
        outbox = Outbox(TEST_CATALOG)
        events = [
            Envelope.wrap(Ticked(key=f"res-{i % KEYS}", seq=i // KEYS), source="tests")
            for i in range(EVENTS)
        ]

        async def write() -> None:
            for start in range(0, EVENTS, PER_TRANSACTION):
                async with sessions() as session, session.begin():
                    await session.execute(text("INSERT INTO orders (n) VALUES (:n)"), {"n": start})
                    await outbox.add(session, *events[start : start + PER_TRANSACTION])
                relay.notify()
                await asyncio.sleep(0.003)

        bus = KafkaEventBus(bootstrap, topics=topics, request_timeout_ms=2000)
        relay = OutboxRelay(
            sessions,
            bus,
            catalog=TEST_CATALOG,
            batch_size=50,
            poll_interval=0.05,
            retry=EventRetry(initial_backoff=0.1, max_backoff=0.5),
        )
        await bus.start()
        await relay.start()
        writer = asyncio.create_task(write())
        try:
            await poll(lambda: relay.published >= EVENTS // 5, every=0.01)
            await asyncio.to_thread(broker.stop)
            published_before_outage = relay.published
            await asyncio.sleep(1.0)  # the shop keeps taking orders while Kafka is down
            waiting = await pending(outbox, sessions)
            assert waiting > 0
            await asyncio.to_thread(broker.start)
            await writer
            await poll(lambda: all_sent(outbox, sessions), within=90, every=0.05)
        finally:
            writer.cancel()
            await relay.stop()
            await bus.stop()
        assert published_before_outage < EVENTS

        async with engine.connect() as conn:
            orders = await conn.scalar(text("SELECT count(*) FROM orders"))
        assert orders == EVENTS // PER_TRANSACTION  # every state change committed

        # Nothing lost on the topic (a retried batch may have been published twice)...
        records = await read_topic(bootstrap, topics.topic("ticks"), EVENTS)
        on_topic = {json.loads(value or b"")["id"] for _, value, _ in records}
        assert on_topic == {e.id for e in events}

        # ...and an idempotent consumer makes each effect once, in key order.
        async def effect(session: AsyncSession, event: Envelope[Any]) -> None:
            await session.execute(
                text("INSERT INTO effects (event_id, k, s) VALUES (:e, :k, :s)"),
                {"e": event.id, "k": event.data.key, "s": event.data.seq},
            )

        consumer = KafkaEventBus(bootstrap, topics=topics, session_timeout_ms=6000)
        consumer.subscribe("effects", SqlProcessedEventStore().handler(sessions, "effects", effect))
        async with consumer:
            await poll(lambda: effects_done(engine), every=0.05)
            await asyncio.sleep(0.3)
        async with engine.connect() as conn:
            rows = (
                await conn.execute(text("SELECT event_id, k, s FROM effects ORDER BY id"))
            ).all()
        assert len(rows) == EVENTS
        assert len({row.event_id for row in rows}) == EVENTS
        per_key: dict[str, list[int]] = defaultdict(list)
        for row in rows:
            per_key[row.k].append(row.s)
        assert per_key == {f"res-{k}": list(range(EVENTS // KEYS)) for k in range(KEYS)}
    finally:
        await asyncio.to_thread(broker.stop)
