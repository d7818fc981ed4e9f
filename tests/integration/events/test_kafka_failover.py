"""A consumer killed mid-batch: its partitions move, every effect still happens once."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections import defaultdict
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from commercekit.events import Envelope, KafkaEventBus, SqlProcessedEventStore, create_topics
from commercekit.testing.servers import KafkaServer

from .consumer_process import effect_handler
from .helpers import Ticked, poll, unique_topics

ROOT = Path(__file__).parents[3]
EVENTS = 1_500
KEYS = 30


async def counts(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT consumer, count(*) FROM effects GROUP BY 1"))
        return {consumer: int(n) for consumer, n in rows.all()}


async def test_a_killed_consumer_hands_its_partitions_over_with_one_effect_each(
    kafka_server: KafkaServer, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    bootstrap = kafka_server.bootstrap_servers
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "CREATE TABLE effects (id bigserial PRIMARY KEY, event_id text NOT NULL, "
                "key text NOT NULL, seq int NOT NULL, consumer text NOT NULL)"
            )
        )
    topics = unique_topics()
    await create_topics(bootstrap, topics=topics, partitions=3)
    group = f"g-{uuid.uuid4().hex[:8]}"
    events = [
        Envelope.wrap(Ticked(key=f"res-{i % KEYS}", seq=i // KEYS), source="tests")
        for i in range(EVENTS)
    ]
    survivor = KafkaEventBus(bootstrap, topics=topics, session_timeout_ms=6000)
    await survivor.publish_many(events)
    survivor.subscribe(
        group,
        SqlProcessedEventStore().handler(sessions, group, effect_handler("survivor")),
        types=["test.ticked"],
    )

    victim = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.events.consumer_process",
        bootstrap,
        engine.url.render_as_string(hide_password=False),
        topics.prefix,
        group,
        "victim",
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )

    async def did_work(name: str, at_least: int) -> bool:
        assert victim.returncode is None, "the consumer process died on its own"
        return (await counts(engine)).get(name, 0) >= at_least

    async def all_effects_done() -> bool:
        return sum((await counts(engine)).values()) >= EVENTS

    try:
        await poll(lambda: did_work("victim", 60))  # alone, it owns every partition
        await survivor.start()  # the group rebalances: both members work
        await poll(lambda: did_work("survivor", 20))
        # the victim owns the other partitions (a rebalance may still be settling)
        await poll(lambda: 0 < len(survivor.assignment()) < 3, within=30)
        victim.kill()  # SIGKILL, mid-batch: no commit, no leave-group
        await victim.wait()
        async with engine.connect() as conn:
            mark = await conn.scalar(text("SELECT max(id) FROM effects"))
        assert mark is not None
        assert (await counts(engine))["victim"] < EVENTS
        await poll(lambda: len(survivor.assignment()) == 3, within=60)  # they moved over
        await poll(all_effects_done, within=90, every=0.05)
        await asyncio.sleep(0.3)  # a duplicate effect would show up now
    finally:
        if victim.returncode is None:
            victim.kill()
            await victim.wait()
        await survivor.stop()

    async with engine.connect() as conn:
        rows = (
            await conn.execute(text("SELECT event_id, key, seq, consumer FROM effects ORDER BY id"))
        ).all()
    assert len(rows) == EVENTS  # no effect twice
    assert {row.event_id for row in rows} == {e.id for e in events}  # none lost
    per_key: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        per_key[row.key].append(row.seq)
    assert per_key == {f"res-{k}": list(range(EVENTS // KEYS)) for k in range(KEYS)}
    ids_and_consumers = await _ids_and_consumers(engine)
    assert {c for id_, c in ids_and_consumers if id_ > mark} == {"survivor"}


async def _ids_and_consumers(engine: AsyncEngine) -> list[tuple[int, str]]:
    async with engine.connect() as conn:
        result = await conn.execute(text("SELECT id, consumer FROM effects ORDER BY id"))
        return [(int(id_), consumer) for id_, consumer in result.all()]
