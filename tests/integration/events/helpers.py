"""A test event type on its own topic, and helpers to read topics back."""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Awaitable, Callable
from typing import ClassVar

from aiokafka import AIOKafkaConsumer

from commercekit.events import CATALOG, DeadLetter, EventPayload, TopicNames


class Ticked(EventPayload):
    """A numbered event of one key: `seq` counts up per key."""

    event_type: ClassVar[str] = "test.ticked"
    schema_version: ClassVar[int] = 1
    topic: ClassVar[str] = "ticks"
    key_field: ClassVar[str] = "key"

    key: str
    seq: int


TEST_CATALOG = CATALOG.with_payloads(Ticked)


def unique_topics(prefix: str | None = None) -> TopicNames:
    """Topic names no other test uses."""
    return TopicNames(prefix=prefix or f"t{uuid.uuid4().hex[:10]}.", catalog=TEST_CATALOG)


async def read_topic(
    bootstrap: str, topic: str, expected: int, within: float = 30
) -> list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]:
    """Read `expected` records from the start of `topic` (no group, nothing committed)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    found: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
    try:
        async with asyncio.timeout(within):
            while len(found) < expected:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    found.extend((r.key, r.value, list(r.headers)) for r in records)
    finally:
        await consumer.stop()
    return found


async def dead_letters(bootstrap: str, topics: TopicNames, expected: int) -> list[DeadLetter]:
    """The first `expected` messages of the dead-letter topic."""
    records = await read_topic(bootstrap, topics.dead_letter_topic, expected)
    return [DeadLetter.from_record(value, key, headers) for key, value, headers in records]


async def poll(
    check: Callable[[], bool] | Callable[[], Awaitable[bool]],
    *,
    within: float = 60,
    every: float = 0.02,
) -> None:
    """Wait until `check()` is true; fail with TimeoutError after `within` seconds."""
    async with asyncio.timeout(within):
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await asyncio.sleep(every)
