"""EmailNotifier on the real broker, with Redis claims and PostgreSQL recipients."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import create_async_engine

from commercekit.email import EmailNotifier, Mailer, MemorySender, SqlRecipients
from commercekit.events import Envelope, TopicNames
from commercekit.events.catalog import PaymentConfirmed, UserCreated
from commercekit.events.idempotency import RedisProcessedEventStore
from commercekit.events.kafka import KafkaEventBus, create_topics
from commercekit.sql import migrate
from commercekit.testing.servers import KafkaServer, PostgresServer, RedisServer


@pytest.fixture
async def recipients(postgres_server: PostgresServer) -> AsyncIterator[SqlRecipients]:
    url = postgres_server.create_database(f"email_{uuid.uuid4().hex[:10]}")
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://"))
    await migrate(engine)
    yield SqlRecipients(engine)
    await engine.dispose()


async def test_redelivered_events_on_kafka_send_one_mail_each(
    kafka_server: KafkaServer, redis_server: RedisServer, recipients: SqlRecipients
) -> None:
    bootstrap = kafka_server.bootstrap_servers
    topics = TopicNames(prefix=f"m{uuid.uuid4().hex[:8]}.")
    await create_topics(bootstrap, topics=topics)
    redis = aioredis.from_url(redis_server.url)
    sender = MemorySender()
    notifier = EmailNotifier(
        Mailer(sender),
        recipients=recipients,
        processed=RedisProcessedEventStore(redis, prefix=f"p{uuid.uuid4().hex[:6]}"),
    )
    # two replicas of the email service in one consumer group
    buses = [KafkaEventBus(bootstrap, topics=topics, session_timeout_ms=6000) for _ in range(2)]
    for bus in buses:
        notifier.subscribe(bus)
    signup = Envelope.wrap(
        UserCreated(user_id="u-7", username="grace", email="grace@example.com"), source="test"
    )
    paid = Envelope.wrap(
        PaymentConfirmed(
            payment_id="p-1", reservation_id="r-1", user_id="u-7",
            amount=Decimal("9.90"), currency="EUR",
        ),
        source="test",
    )  # fmt: skip
    try:
        for bus in buses:
            await bus.start()
        await buses[0].publish(signup)
        async with asyncio.timeout(60):
            while await recipients.lookup("u-7") is None:  # noqa: ASYNC110 - waiting on the consumer
                await asyncio.sleep(0.1)
        for _ in range(3):  # the same payment event, delivered three times
            await buses[1].publish(paid)
        async with asyncio.timeout(60):
            while len(sender.outbox) < 2:  # noqa: ASYNC110 - waiting on the consumer
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # time for any duplicate to show up
    finally:
        for bus in buses:
            await bus.stop()
        await redis.aclose()

    assert sender.attempts == 2
    assert sorted(s.idempotency_key for s in sender.outbox) == sorted(
        [f"welcome/{signup.id}", f"payment_succeeded/{paid.id}"]
    )
    recipient = await recipients.lookup("u-7")
    assert recipient is not None
    assert recipient.email == "grace@example.com"
