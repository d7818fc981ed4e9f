"""``python -m benchmarks.kafka``: what one Kafka partition carries, produced and consumed.

The capacity model (docs/operations.md) needs the events per second of one
partition, since a consumer group handles each partition's events one at a
time, in order. On a Kafka and a PostgreSQL of the test harness, one topic of
one partition (the ``payments`` topic, as the reference app names it):

- ``publish``: `--events` ``payment.confirmed`` events published with
  `KafkaEventBus` (acks=all, idempotent), `--concurrency` publishers at once;
- ``consume``: a consumer group reads them all with a handler that does
  nothing: the bus's own cost (fetch, decode, validate, commit after the batch);
- ``consume+claim``: another group, each event claimed in its own PostgreSQL
  transaction (`SqlProcessedEventStore.handler`): the floor of any consumer
  whose effect is a database change;
- ``settle``: the inventory service's consumer itself: `PaymentSettlement`
  on `DurableReservations` (Redis and the ledger), each event confirming one
  of `--events` holds made beforehand: the payment path's rate per partition.

Each phase prints events/s; ``--out`` writes them as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from commercekit.events import Envelope, KafkaEventBus, PaymentConfirmed, TopicNames
from commercekit.events.idempotency import SqlProcessedEventStore
from commercekit.events.kafka import create_topics
from commercekit.payments import Money, PaymentSettlement, RefundService
from commercekit.reservations import (
    DurableReservations,
    RedisReservationStore,
    Reservation,
    ReservationLedger,
)
from commercekit.sql import migrate
from commercekit.testing.servers import KafkaServer, PostgresServer, RedisServer

Handler = Callable[[Envelope[Any]], Awaitable[None]]


PRICE = Decimal("19.99")


def _event(i: int, reservation_id: str | None = None) -> Envelope[PaymentConfirmed]:
    payload = PaymentConfirmed(
        payment_id=f"pay-{i}",
        reservation_id=reservation_id or f"res-{i}",
        user_id=f"user-{i % 1000}",
        amount=PRICE,
        currency="USD",
    )
    return Envelope.wrap(payload, source="benchmark")


async def _publish(bus: KafkaEventBus, events: int, concurrency: int) -> float:
    """Seconds to publish `events` events from `concurrency` publishers."""
    queue = iter(range(events))

    async def publisher() -> None:
        for i in queue:
            await bus.publish(_event(i))

    started = time.perf_counter()
    await asyncio.gather(*(publisher() for _ in range(concurrency)))
    return time.perf_counter() - started


async def _consume(
    bootstrap: str, topics: TopicNames, group: str, handler: Handler, events: int
) -> float:
    """Seconds for a new consumer group to handle all `events` events, from its first one."""
    done = asyncio.Event()
    seen = 0
    first: float | None = None

    async def counting(event: Envelope[Any]) -> None:
        nonlocal seen, first
        if first is None:
            first = time.perf_counter()
        await handler(event)
        seen += 1
        if seen == events:
            done.set()

    bus = KafkaEventBus(bootstrap, topics=topics, client_id=group)
    bus.subscribe(group, counting, types=["payment.confirmed"])
    await bus.start()
    try:
        await asyncio.wait_for(done.wait(), timeout=600)
    finally:
        await bus.stop()
    assert first is not None
    return time.perf_counter() - first


async def _nothing(_: Envelope[Any]) -> None:
    return None


async def _settle(
    kafka: KafkaServer,
    redis_url: str,
    engine: AsyncEngine,
    events: int,
    concurrency: int,
) -> float:
    """Events/s of `PaymentSettlement` confirming `events` holds through one partition."""
    import redis.asyncio as aioredis  # noqa: PLC0415 (the redis extra)

    client = aioredis.from_url(redis_url)
    sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
    reservations = DurableReservations(
        RedisReservationStore(client, prefix=f"bench{uuid.uuid4().hex[:6]}", guarded=True),
        ReservationLedger(engine),
    )
    await reservations.start()

    async def price(_: Reservation) -> Money:
        return Money(amount=PRICE, currency="USD")

    settlement = PaymentSettlement(
        reservations, RefundService(sessions, None, source="benchmark"), prices=price
    )
    try:
        await reservations.set_stock("hot", events)
        holds = [
            await reservations.reserve([("hot", 1)], ttl=3600, owner=f"user-{i % 1000}")
            for i in range(events)
        ]
        topics = TopicNames(prefix=f"bench{uuid.uuid4().hex[:6]}.")
        await create_topics(kafka.bootstrap_servers, topics=topics, partitions=1)
        bus = KafkaEventBus(kafka.bootstrap_servers, topics=topics, client_id="bench")
        await bus.start()
        try:
            queue = iter(enumerate(holds))

            async def publisher() -> None:
                for i, hold in queue:
                    await bus.publish(_event(i, hold.id))

            await asyncio.gather(*(publisher() for _ in range(concurrency)))
        finally:
            await bus.stop()
        seconds = await _consume(
            kafka.bootstrap_servers, topics, "bench-settle", settlement.handler, events
        )
        level = await reservations.stock("hot")
        assert level.sold == events, f"settled {level.sold} of {events}"
    finally:
        await client.aclose()
    return events / seconds


async def run(
    kafka: KafkaServer, postgres_url: str, redis_url: str, events: int, concurrency: int
) -> dict[str, Any]:
    """The four phases on these servers (a database and a Redis of their own): their rates."""
    topics = TopicNames(prefix=f"bench{uuid.uuid4().hex[:6]}.")
    await create_topics(kafka.bootstrap_servers, topics=topics, partitions=1)
    engine = create_async_engine(postgres_url, pool_size=5)
    await migrate(engine)
    sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)

    async def nothing_in(_: AsyncSession, __: Envelope[Any]) -> None:
        return None

    claimed = SqlProcessedEventStore().handler(sessions, "bench-claim", nothing_in)
    try:
        bus = KafkaEventBus(kafka.bootstrap_servers, topics=topics, client_id="bench")
        await bus.start()
        try:
            await _publish(bus, min(events, 1000), concurrency)  # warm-up
            published = await _publish(bus, events, concurrency)
        finally:
            await bus.stop()
        total = events + min(events, 1000)
        consumed = await _consume(kafka.bootstrap_servers, topics, "bench-read", _nothing, total)
        claims = await _consume(kafka.bootstrap_servers, topics, "bench-claim", claimed, total)
        settled = await _settle(kafka, redis_url, engine, events, concurrency)
    finally:
        await engine.dispose()
    rates = {
        "publish": events / published,
        "consume": total / consumed,
        "consume+claim": total / claims,
        "settle": settled,
    }
    return {
        "events": events,
        "concurrency": concurrency,
        "partitions": 1,
        "events_per_second": rates,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print (and optionally write) its rates."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kafka", description=__doc__)
    parser.add_argument("--events", type=int, default=20_000, help="events per phase")
    parser.add_argument("--concurrency", type=int, default=64, help="publishers at once")
    parser.add_argument("--out", type=Path, help="write the results to this JSON file")
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="ck-kafka-bench-") as tmp,
        KafkaServer(Path(tmp) / "kafka") as kafka,
        PostgresServer(Path(tmp) / "postgres") as postgres,
        RedisServer(Path(tmp) / "redis") as redis,
    ):
        result = asyncio.run(
            run(kafka, postgres.async_url, redis.url, args.events, args.concurrency)
        )
    for phase, rate in result["events_per_second"].items():
        print(f"{phase:14s} {rate:10,.0f} events/s on 1 partition")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
