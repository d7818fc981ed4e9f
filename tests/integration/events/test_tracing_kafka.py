"""The trace id on a real broker: produce, consume, publish again, and out of the outbox."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from commercekit import tracing
from commercekit.events import Envelope, KafkaEventBus, Outbox, OutboxRelay, create_topics
from commercekit.events._tables import OutboxMessage
from commercekit.testing.servers import KafkaServer
from commercekit.tracing import TraceContext

from .helpers import TEST_CATALOG, Ticked, poll, read_topic, unique_topics

TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT = f"00-{TRACE}-b7ad6b7169203331-01"


async def test_the_trace_id_survives_produce_consume_and_the_handlers_own_publish(
    kafka_server: KafkaServer,
) -> None:
    bootstrap = kafka_server.bootstrap_servers
    topics = unique_topics()
    await create_topics(bootstrap, topics=topics, partitions=2)
    bus = KafkaEventBus(bootstrap, topics=topics)
    handled: list[tuple[int, TraceContext | None, Envelope[Any]]] = []

    async def relay_on(event: Envelope[Any]) -> None:
        handled.append((event.data.seq, tracing.current(), event))
        if event.data.seq == 0:  # the handler publishes the next step, giving no trace
            await bus.publish(Envelope.wrap(Ticked(key=event.data.key, seq=1), source="tests"))

    bus.subscribe("tracing", relay_on, types=["test.ticked"])
    async with bus:
        with tracing.start_span("POST /orders", TraceContext.parse(CLIENT, "shop=1")) as request:
            await bus.publish(Envelope.wrap(Ticked(key="order-1", seq=0), source="tests"))
        await poll(lambda: len(handled) >= 2, within=60)

    first, second = sorted(handled, key=lambda h: h[0])
    _, first_span, first_event = first
    _, second_span, second_event = second
    assert first_event.traceparent == request.traceparent
    assert first_event.tracestate == "shop=1"
    assert first_span is not None
    assert first_span.trace_id == TRACE
    assert first_span.span_id != request.span_id
    assert second_event.trace == first_span  # published from the first handler's span
    assert second_span is not None
    assert second_span.trace_id == TRACE

    records = await read_topic(bootstrap, topics.topic("ticks"), 2)
    for _, value, headers in records:
        wire = json.loads(value or b"")
        assert dict(headers)["traceparent"].decode() == wire["traceparent"]
        assert TraceContext.parse(wire["traceparent"]).trace_id == TRACE
        assert dict(headers)["tracestate"] == b"shop=1"


async def test_an_outbox_event_keeps_the_trace_it_was_added_in_when_the_relay_sends_it(
    kafka_server: KafkaServer, sessions: async_sessionmaker[AsyncSession]
) -> None:
    bootstrap = kafka_server.bootstrap_servers
    topics = unique_topics()
    await create_topics(bootstrap, topics=topics, partitions=1)
    outbox = Outbox(TEST_CATALOG)
    with tracing.start_span("POST /orders", TraceContext.parse(CLIENT)) as request:
        async with sessions() as session, session.begin():
            await outbox.add(session, Envelope.wrap(Ticked(key="o", seq=0), source="tests"))
    async with sessions() as session, session.begin():
        await outbox.add(session, Envelope.wrap(Ticked(key="o", seq=1), source="tests"))
    async with sessions() as session:
        rows = list(await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
    assert [row.trace_id for row in rows] == [TRACE, None]
    assert json.loads(rows[0].body)["traceparent"] == request.traceparent

    bus = KafkaEventBus(bootstrap, topics=topics)
    handled: list[tuple[Envelope[Any], TraceContext | None]] = []

    async def record(event: Envelope[Any]) -> None:
        handled.append((event, tracing.current()))

    bus.subscribe("outbox-tracing", record, types=["test.ticked"])
    async with bus, OutboxRelay(sessions, bus, catalog=TEST_CATALOG, poll_interval=0.05):
        await poll(lambda: len(handled) >= 2, within=60)
    (traced, traced_span), (untraced, untraced_span) = sorted(handled, key=lambda h: h[0].data.seq)
    assert traced.traceparent == request.traceparent
    assert traced_span is not None
    assert traced_span.trace_id == TRACE
    assert untraced.traceparent is None  # the relay runs in no trace: it adds none
    assert untraced_span is not None
    assert untraced_span.trace_id != TRACE
