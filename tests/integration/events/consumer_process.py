"""A consumer in its own process, for the test that kills one with SIGKILL.

``python -m tests.integration.events.consumer_process BOOTSTRAP DB_URL PREFIX GROUP NAME``
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from commercekit.events import Envelope, KafkaEventBus, SqlProcessedEventStore, TopicNames
from tests.integration.events.helpers import TEST_CATALOG

HANDLER_SECONDS = 0.003


def effect_handler(name: str) -> Any:
    """The effect: one row in ``effects`` per handled event (no unique constraint)."""

    async def effect(session: AsyncSession, event: Envelope[Any]) -> None:
        await asyncio.sleep(HANDLER_SECONDS)
        await session.execute(
            text("INSERT INTO effects (event_id, key, seq, consumer) VALUES (:e, :k, :s, :c)"),
            {"e": event.id, "k": event.data.key, "s": event.data.seq, "c": name},
        )

    return effect


async def main(bootstrap: str, db_url: str, prefix: str, group: str, name: str) -> None:
    engine = create_async_engine(db_url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    topics = TopicNames(prefix=prefix, catalog=TEST_CATALOG)
    bus = KafkaEventBus(bootstrap, topics=topics, client_id=name, session_timeout_ms=6000)
    bus.subscribe(
        group,
        SqlProcessedEventStore().handler(sessions, group, effect_handler(name)),
        types=["test.ticked"],
    )
    async with bus:
        print("started", flush=True)
        await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
