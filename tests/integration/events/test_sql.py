"""The events' tables on a real PostgreSQL and Redis: migration, processed events, outbox."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections import defaultdict
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from commercekit.errors import UnknownEventType
from commercekit.events import (
    Envelope,
    EventLine,
    InMemoryEventBus,
    Outbox,
    OutboxRelay,
    ProcessedEventStore,
    RedisProcessedEventStore,
    ReservationReleased,
    SqlClaims,
    SqlProcessedEventStore,
    UserCreated,
    idempotent,
)
from commercekit.sql import migrate
from commercekit.testing.servers import PostgresServer, RedisServer

from .conftest import fresh_database

Sessions = async_sessionmaker[AsyncSession]


def released(key: str, seq: int) -> Envelope[ReservationReleased]:
    payload = ReservationReleased(
        reservation_id=key, owner="u", lines=(EventLine(sku="A", quantity=1),), reason=str(seq)
    )
    return Envelope.wrap(payload, source="tests")


async def test_migrate_creates_the_events_tables(postgres_server: PostgresServer) -> None:
    url = fresh_database(postgres_server)
    await migrate(url)
    await migrate(url)  # idempotent
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:

            def describe(sync_conn: Any) -> dict[str, Any]:
                found = inspect(sync_conn)
                return {
                    "tables": set(found.get_table_names()),
                    "outbox": {c["name"] for c in found.get_columns("commercekit_outbox")},
                    "outbox_unique": found.get_unique_constraints("commercekit_outbox"),
                    "processed_pk": found.get_pk_constraint("commercekit_processed_events"),
                }

            info = await conn.run_sync(describe)
            heads = set(
                (
                    await conn.execute(text("SELECT version_num FROM commercekit_alembic_version"))
                ).scalars()
            )
    finally:
        await engine.dispose()
    assert {"commercekit_outbox", "commercekit_processed_events"} <= info["tables"]
    assert {
        "id",
        "event_id",
        "event_type",
        "key",
        "body",
        "trace_id",
        "created_at",
        "sent_at",
    } == info["outbox"]
    assert [u["column_names"] for u in info["outbox_unique"]] == [["event_id"]]
    assert info["processed_pk"]["constrained_columns"] == ["consumer", "event_id"]
    assert "events_0002" in heads


async def _effects_table(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE effects (id serial PRIMARY KEY, event_id text)"))


async def _effects(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list(
            (await conn.execute(text("SELECT event_id FROM effects ORDER BY id"))).scalars()
        )


async def test_the_sql_store_gives_one_effect_per_event(
    engine: AsyncEngine, sessions: Sessions
) -> None:
    await _effects_table(engine)
    store = SqlProcessedEventStore()
    failures = 1

    async def effect(session: AsyncSession, event: Envelope[Any]) -> None:
        nonlocal failures
        await session.execute(text("INSERT INTO effects (event_id) VALUES (:e)"), {"e": event.id})
        if failures:
            failures -= 1
            raise RuntimeError("crash after the effect, before the commit")

    handler = store.handler(sessions, "inventory", effect)
    event = released("r1", 1)
    with pytest.raises(RuntimeError):
        await handler(event)
    assert await _effects(engine) == []  # rolled back together with the record
    await handler(event)
    await handler(event)
    assert await _effects(engine) == [event.id]
    async with sessions() as session:
        assert await store.seen(session, "inventory", event.id)
        assert not await store.seen(session, "email", event.id)
    async with sessions() as session, session.begin():
        assert await store.purge(session, dt.datetime.now(dt.UTC) + dt.timedelta(1)) == 1


async def test_concurrent_deliveries_of_one_event_give_one_effect(
    engine: AsyncEngine, sessions: Sessions
) -> None:
    await _effects_table(engine)
    handler = SqlProcessedEventStore().handler(
        sessions,
        "inventory",
        lambda session, event: session.execute(
            text("INSERT INTO effects (event_id) VALUES (:e)"), {"e": event.id}
        ),
    )
    event = released("r1", 1)
    await asyncio.gather(*(handler(event) for _ in range(12)))
    assert await _effects(engine) == [event.id]


async def test_the_redis_store_claims_once_releases_and_expires(redis_server: RedisServer) -> None:
    client = aioredis.from_url(redis_server.url)
    try:
        prefix = f"t{uuid.uuid4().hex[:8]}:"
        store = RedisProcessedEventStore(client, prefix=prefix, ttl=dt.timedelta(seconds=60))
        assert isinstance(store, ProcessedEventStore)
        assert await store.claim("email", "e1")
        assert not await store.claim("email", "e1")
        assert await store.claim("audit", "e1")
        assert 0 < await client.pttl(f"{prefix}email:e1") <= 60_000
        await store.release("email", "e1")
        assert await store.claim("email", "e1")
        short = RedisProcessedEventStore(client, prefix=prefix, ttl=dt.timedelta(milliseconds=50))
        assert await short.claim("email", "e2")
        await asyncio.sleep(0.1)
        assert await short.claim("email", "e2")  # the claim expired
    finally:
        await client.aclose()


async def test_outbox_rows_commit_or_roll_back_with_the_state_change(
    engine: AsyncEngine, sessions: Sessions
) -> None:
    outbox = Outbox()
    await _effects_table(engine)
    kept, dropped = released("r1", 1), released("r1", 2)
    async with sessions() as session, session.begin():
        await session.execute(text("INSERT INTO effects (event_id) VALUES ('state')"))
        await outbox.add(session, kept)

    async def failing_change() -> None:
        async with sessions() as session, session.begin():
            await session.execute(text("INSERT INTO effects (event_id) VALUES ('lost')"))
            await outbox.add(session, dropped)
            raise RuntimeError("the state change failed")

    with pytest.raises(RuntimeError):
        await failing_change()
    async with sessions() as session:
        assert await outbox.pending(session) == 1
        with pytest.raises(UnknownEventType):
            await outbox.add(session, kept.model_copy(update={"type": "nothing.happened"}))
    assert await _effects(engine) == ["state"]

    bus = InMemoryEventBus()
    relay = OutboxRelay(sessions, bus)
    assert await relay.relay_once() == 1
    assert await relay.relay_once() == 0
    assert [r.value for r in bus.records("reservations")] == [kept.to_json()]
    async with sessions() as session:
        assert await outbox.pending(session) == 0


async def test_several_relays_keep_per_key_order_and_send_each_event_once(
    sessions: Sessions,
) -> None:
    outbox = Outbox()
    bus = InMemoryEventBus(partitions=1)  # one log: the publish order is visible
    keys, per_key = 12, 50

    async def writer(key: int) -> None:
        for seq in range(per_key):
            async with sessions() as session, session.begin():
                await outbox.add(session, released(f"r{key}", seq))

    relays = [OutboxRelay(sessions, bus, batch_size=17, poll_interval=0.01) for _ in range(3)]
    for relay in relays:
        await relay.start()
    try:
        await asyncio.gather(*(writer(k) for k in range(keys)))
        async with asyncio.timeout(30):
            while True:
                async with sessions() as session:
                    if await outbox.pending(session) == 0:
                        break
                await asyncio.sleep(0.02)
    finally:
        for relay in relays:
            await relay.stop()
    seen: dict[str, list[int]] = defaultdict(list)
    for record in bus.records("reservations"):
        event = bus.catalog.decode(record.value or b"")
        seen[event.key].append(int(event.data.reason))
    assert seen == {f"r{k}": list(range(per_key)) for k in range(keys)}
    assert sum(1 for relay in relays if relay.published) >= 2  # they shared the work


async def test_sql_claims_commit_at_once_and_a_failed_effect_is_released(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    claims = SqlClaims(sessions)
    assert isinstance(claims, ProcessedEventStore)
    assert await claims.claim("mailer", "e-1") is True
    assert await SqlClaims(sessions).claim("mailer", "e-1") is False  # another replica
    assert await claims.claim("other-consumer", "e-1") is True
    await claims.release("mailer", "e-1")
    assert await claims.claim("mailer", "e-1") is True

    sent: list[str] = []
    failures = iter([RuntimeError("smtp down")])

    async def send(event: Envelope[Any]) -> None:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        sent.append(event.id)

    handle = idempotent(claims, "mailer", send)
    event = Envelope.wrap(UserCreated(user_id="u-1", username="ada", email="a@x.io"), source="t")
    with pytest.raises(RuntimeError):
        await handle(event)
    await handle(event)  # the redelivery: the failed claim was released
    await handle(event)  # a duplicate: nothing
    assert sent == [event.id]


async def _published(bus: InMemoryEventBus, count: int) -> None:
    async with asyncio.timeout(10):
        while True:
            if len(bus.records("reservations")) >= count:
                return
            await asyncio.sleep(0.01)


async def test_a_committed_event_wakes_a_relay_of_another_engine_at_once(
    postgres_server: PostgresServer,
) -> None:
    # The relay polls every minute; only the commit's NOTIFY can wake it in time.
    url = fresh_database(postgres_server)
    await migrate(url)
    relay_engine, writer_engine = create_async_engine(url), create_async_engine(url)
    try:
        bus = InMemoryEventBus()
        relay = OutboxRelay(async_sessionmaker(relay_engine), bus, poll_interval=60)
        writer = async_sessionmaker(writer_engine)
        outbox = Outbox()
        async with relay:
            await asyncio.sleep(0.5)  # the first look, at start, found nothing
            for seq in range(3):
                async with writer() as session, session.begin():
                    await outbox.add(session, released("woken", seq))
                await _published(bus, seq + 1)
            # A rolled-back transaction's NOTIFY is never delivered, nor its event.
            with contextlib.suppress(RuntimeError):
                async with writer() as session, session.begin():
                    await outbox.add(session, released("woken", 99))
                    raise RuntimeError("rolled back")
            await asyncio.sleep(0.5)
            assert len(bus.records("reservations")) == 3
            # A listening connection killed by the server is replaced; events still wake it.
            async with writer_engine.begin() as conn:
                await conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
                    )
                )
            await asyncio.sleep(2)
            async with writer() as session, session.begin():
                await outbox.add(session, released("woken", 3))
            await _published(bus, 4)
    finally:
        await relay_engine.dispose()
        await writer_engine.dispose()
