"""A real PostgreSQL refusing in each way it can: consumers wait it out, routes answer 503.

The server is made to refuse for real, never mocked:

- 57P03 "the database system is not accepting connections":
  `PostgresServer.refuse_connections` restarts the cluster as a standby
  without hot standby, which refuses every connection with SQLSTATE 57P03,
  the code of a server starting up, for as long as the test wants;
  `accept_connections` promotes it. A crash recovery gives the same code
  but only for a moment, which a test cannot hold deterministically.
- 53300 "too many clients already": every slot of ``max_connections`` taken.
- 25006 "read-only transaction": ``ALTER DATABASE ... SET
  default_transaction_read_only = on``, as on a demoted primary.
- 57P01 "terminating connection due to administrator command":
  ``pg_terminate_backend`` on the handler's backend, mid-statement.

Each consumer test runs a handler on an `InMemoryEventBus` with its default
`EventRetry` (5 attempts): the outage lasts well past 5 failures, and the
event must be handled once PostgreSQL is back, never dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from reference_app.common.db import migrate
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from commercekit.events import Envelope, InMemoryEventBus, UserCreated
from commercekit.testing.pytest_plugin import unavailable
from commercekit.testing.servers import PostgresServer, RedisServer, ServerNotAvailable
from commercekit.transient import is_transient
from tests.integration.reference_app.test_payment_service import running

OUTAGE_FAILURES = 8
"""Failed attempts to see before PostgreSQL comes back: past the default 5 attempts."""

INSERT = "INSERT INTO handled (event_id) VALUES (:id)"
"""What the handler does: one row per event handled."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A PostgreSQL of this module's own (the tests break it), with few connection slots."""
    instance = PostgresServer(Path(tmp_path_factory.mktemp("refusing")), max_connections=12)
    try:
        instance.start()
    except ServerNotAvailable as exc:
        unavailable(str(exc))
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture
async def database(server: PostgresServer) -> str:
    """A fresh database with a ``handled`` table; its SQLAlchemy URL."""
    server.accept_connections()  # if a test left it refusing
    name = f"t_{uuid.uuid4().hex[:10]}"
    url = server.create_database(name).replace("postgresql://", "postgresql+asyncpg://")
    engine = create_async_engine(url, poolclass=NullPool)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE handled (event_id text PRIMARY KEY)"))
    await engine.dispose()
    return url


@pytest.fixture
async def engine(database: str) -> AsyncIterator[AsyncEngine]:
    """A new connection for every use, as after a pool's connections were lost."""
    engine = create_async_engine(database, poolclass=NullPool)
    yield engine
    await engine.dispose()


def sqlstates(error: BaseException) -> set[str]:
    """Every SQLSTATE in `error`'s chain."""
    found: set[str] = set()
    link: BaseException | None = error
    while link is not None:
        for candidate in (link, getattr(link, "orig", None)):
            code = getattr(candidate, "sqlstate", None)
            if isinstance(code, str):
                found.add(code)
        link = link.__cause__ or link.__context__
    return found


def event() -> Envelope[UserCreated]:
    return Envelope.wrap(UserCreated(user_id="u1", username="n1", email="u1@x.io"), source="tests")


async def rows(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(text("SELECT event_id FROM handled"))).scalars())


async def consume_through(
    engine: AsyncEngine,
    heal: Callable[[], Awaitable[None]],
    *,
    statement: Callable[[int], str] = lambda _call: INSERT,
    before: Callable[[int], Awaitable[None]] | None = None,
) -> tuple[InMemoryEventBus, list[BaseException], str]:
    """Handle one event while PostgreSQL refuses; heal it after `OUTAGE_FAILURES` failures."""
    bus = InMemoryEventBus()  # the default EventRetry: 5 attempts, then the dead-letter topic
    errors: list[BaseException] = []
    outage_seen = asyncio.Event()
    calls = 0

    async def handle(received: Envelope[Any]) -> None:
        nonlocal calls
        calls += 1
        if before is not None:
            await before(calls)
        try:
            async with engine.begin() as conn:
                await conn.execute(text(statement(calls)), {"id": received.id})
        except Exception as exc:
            errors.append(exc)
            if len(errors) >= OUTAGE_FAILURES:
                outage_seen.set()
            raise

    published = event()
    bus.subscribe("settlement", handle)
    async with bus:
        await bus.publish(published)
        # Dead-lettered after 5 attempts, the handler would never fail 8 times.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(outage_seen.wait(), 15)
        await heal()
        async with asyncio.timeout(60):
            await bus.drain()
    return bus, errors, published.id


def assert_waited_out(
    bus: InMemoryEventBus, errors: list[BaseException], handled: list[str], event_id: str, code: str
) -> None:
    assert bus.dead_letters() == [], "the event was dead-lettered during the outage"
    assert len(errors) >= OUTAGE_FAILURES
    assert all(is_transient(error) for error in errors), [repr(e) for e in errors]
    assert any(code in sqlstates(error) for error in errors), [sqlstates(e) for e in errors]
    assert handled == [event_id], "handled exactly once, after the outage"


# -------------------------------------------------------------------- 57P03
async def test_a_consumer_waits_out_postgresql_not_accepting_connections_57p03(
    server: PostgresServer, engine: AsyncEngine
) -> None:
    await asyncio.to_thread(server.refuse_connections)

    async def heal() -> None:
        await asyncio.to_thread(server.accept_connections)

    bus, errors, event_id = await consume_through(engine, heal)
    assert_waited_out(bus, errors, await rows(engine), event_id, "57P03")


async def test_the_payment_route_answers_503_with_retry_after_while_postgresql_refuses(
    server: PostgresServer, redis_server: RedisServer
) -> None:
    url = server.create_database(f"pay_{uuid.uuid4().hex[:10]}")
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://"))
    await migrate(engine)
    client = aioredis.from_url(redis_server.url)
    try:
        async with running(engine, client) as service:
            reservation = await service.reserve()
            await asyncio.to_thread(server.refuse_connections)
            await engine.dispose()  # the pooled connections died with the server
            try:
                refused = await service.pay(reservation.id, key="pay-once")
            finally:
                await asyncio.to_thread(server.accept_connections)
            assert refused.status_code == 503, refused.text
            assert refused.headers["retry-after"] == "1"
            assert refused.headers["content-type"] == "application/json"
            assert refused.json()["error"]["code"] == "backend_unavailable"
            await engine.dispose()
            accepted = await service.pay(reservation.id, key="pay-once")
            assert accepted.status_code == 202, accepted.text
    finally:
        await client.aclose()
        await engine.dispose()


# -------------------------------------------------------------------- 53300
async def test_a_consumer_waits_out_too_many_connections_53300(
    server: PostgresServer, engine: AsyncEngine
) -> None:
    hogs: list[asyncpg.Connection] = []

    async def take_every_slot() -> None:
        for _ in range(server.max_connections + 1):
            hogs.append(await asyncpg.connect(server.url))

    with pytest.raises(asyncpg.TooManyConnectionsError):
        await take_every_slot()

    async def heal() -> None:
        for hog in hogs:
            await hog.close()

    try:
        bus, errors, event_id = await consume_through(engine, heal)
    finally:
        await heal()
    assert_waited_out(bus, errors, await rows(engine), event_id, "53300")


# -------------------------------------------------------------------- 25006
async def test_a_consumer_waits_out_a_read_only_database_25006(
    server: PostgresServer, engine: AsyncEngine, database: str
) -> None:
    name = database.rsplit("/", 1)[1]
    admin = await asyncpg.connect(server.url_for("postgres"))
    try:
        await admin.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = on")

        async def heal() -> None:
            await admin.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = off")

        bus, errors, event_id = await consume_through(engine, heal)
    finally:
        await admin.execute(f"ALTER DATABASE {name} RESET default_transaction_read_only")
        await admin.close()
    assert_waited_out(bus, errors, await rows(engine), event_id, "25006")


# -------------------------------------------------------------------- 57P01
async def test_a_consumer_retries_a_backend_terminated_under_it_57p01(
    server: PostgresServer, engine: AsyncEngine
) -> None:
    admin = await asyncpg.connect(server.url_for("postgres"))
    terminations: list[asyncio.Task[int]] = []

    async def terminate_the_sleeper() -> int:
        for _ in range(500):
            killed: int = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE query LIKE '%pg_sleep(30)%' AND pid <> pg_backend_pid()"
            )
            if killed:
                return killed
            await asyncio.sleep(0.02)
        return 0

    async def before(call: int) -> None:
        if call <= OUTAGE_FAILURES:
            terminations.append(asyncio.create_task(terminate_the_sleeper()))

    def statement(call: int) -> str:
        if call > OUTAGE_FAILURES:
            return INSERT  # the backend is left alone from now on
        return "INSERT INTO handled (event_id) SELECT CAST(:id AS text) FROM pg_sleep(30)"

    async def heal() -> None:
        pass

    try:
        bus, errors, event_id = await consume_through(
            engine, heal, statement=statement, before=before
        )
        killed = await asyncio.gather(*terminations)
    finally:
        await admin.close()
    assert killed == [1] * OUTAGE_FAILURES
    assert_waited_out(bus, errors, await rows(engine), event_id, "57P01")
