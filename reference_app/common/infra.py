"""The backing servers a service uses: PostgreSQL, Redis and Kafka, or their embedded stand-ins.

A service's lifespan opens an `Infra` with `connect` (the servers its
settings name) and hands it to the service's ``wire`` function, which builds
the service's adapters on it. ``commercekit demo`` opens one `embedded`
`Infra` (SQLite, fakeredis running the same Lua, the in-memory bus) and
wires every service on it, so both modes run the same code.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from commercekit.events import (
    EventBus,
    EventRetry,
    InMemoryEventBus,
    KafkaEventBus,
    create_topics,
)
from commercekit.transient import is_transient
from reference_app.common.db import migrate, ping
from reference_app.common.probes import ReadinessCheck
from reference_app.settings import ServiceSettings

__all__ = ["HANDLER_RETRY", "Infra", "connect", "embedded", "redis_options"]

log = logging.getLogger("reference_app.infra")

STARTUP_ATTEMPTS = 60
"""Tries, a second apart, for a server to come up (compose starts everything at once)."""

KAFKA_PARTITIONS = 6
"""Partitions of each topic the services create: room for six consumers per group."""

HANDLER_RETRY = EventRetry(transient=is_transient)
"""Consumers wait out every transient failure (`is_transient`): never a dead-lettered event."""

T = TypeVar("T")


async def _when_up(what: str, attempt: Callable[[], Awaitable[T]]) -> T:
    for n in range(1, STARTUP_ATTEMPTS + 1):
        try:
            return await attempt()
        except Exception as exc:
            if n == STARTUP_ATTEMPTS or not is_transient(exc):
                raise
            log.warning("%s not reachable yet (%r); retrying", what, exc)
            await asyncio.sleep(1.0)
    raise AssertionError("unreachable")


def redis_options() -> dict[str, Any]:
    """The Redis client's options: bounded waits, and a stale connection replaced at once.

    After Redis restarts, each pooled connection is dead; without a retry,
    each would fail one request (a 503) at its next use, however late. One
    retry on a connection error takes a fresh connection. redis-py 8's
    maintenance notifications (which skip the pool's stale-connection check)
    are turned off where they exist.
    """
    options: dict[str, Any] = {
        "socket_timeout": 5,
        "socket_connect_timeout": 2,
        "retry": Retry(NoBackoff(), 1),
        "retry_on_error": [RedisConnectionError],
    }
    if "maint_notifications_config" in inspect.signature(Redis.__init__).parameters:
        from redis.maint_notifications import MaintNotificationsConfig  # noqa: PLC0415 (8.x)

        options["maint_notifications_config"] = MaintNotificationsConfig(enabled=False)
    return options


@dataclass
class Infra:
    """The connections a service's adapters are built on.

    Attributes:
        engine: the SQLAlchemy engine (PostgreSQL, or SQLite when embedded).
        sessions: sessions on `engine`.
        embedded: True in ``commercekit demo``.
        checks: the readiness checks of what was opened (``/ready``).
        redis_client: the Redis client, if this service uses Redis (see `redis`).
        event_bus: the event bus, if this service uses one (see `bus`).
    """

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    embedded: bool = False
    checks: dict[str, ReadinessCheck] = field(default_factory=dict)
    redis_client: Any = None
    event_bus: EventBus | None = None

    @property
    def redis(self) -> Any:
        """The asyncio Redis client (redis-py, or fakeredis when embedded)."""
        if self.redis_client is None:
            raise RuntimeError("this service was not connected to Redis")
        return self.redis_client

    @property
    def bus(self) -> EventBus:
        """The event bus (Kafka, or the in-memory bus when embedded)."""
        if self.event_bus is None:
            raise RuntimeError("this service was not connected to Kafka")
        return self.event_bus


async def _kafka_reachable(servers: list[str]) -> None:
    """Open (and close) a TCP connection to the first broker that accepts one."""
    error: OSError | None = None
    for server in servers:
        host, _, port = server.rpartition(":")
        try:
            _, writer = await asyncio.open_connection(host.strip("[]"), int(port))
        except OSError as exc:
            error = exc
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise error or OSError("no Kafka broker configured")


@asynccontextmanager
async def connect(
    settings: ServiceSettings, *, client_id: str, redis: bool = False, kafka: bool = False
) -> AsyncIterator[Infra]:
    """Open PostgreSQL (migrated), and Redis and Kafka if asked; close them on exit.

    Each is waited for (a minute at most) rather than failing at once, so
    a stack can start in any order. The Kafka bus is started, with the
    catalog's topics created; the service subscribes its handlers to it.
    """
    async with AsyncExitStack() as stack:
        # No pre-ping (a round trip before every checkout): a connection that
        # died with its server fails its request (503) and invalidates the
        # pool, so the next checkout opens fresh connections.
        engine = create_async_engine(
            settings.database_dsn, pool_size=settings.database_pool_size, max_overflow=0
        )
        stack.push_async_callback(engine.dispose)
        await _when_up("PostgreSQL", lambda: migrate(engine))
        infra = Infra(engine, async_sessionmaker(engine, expire_on_commit=False))
        infra.checks["postgres"] = lambda: ping(engine)
        if redis:
            client = Redis.from_url(settings.redis_dsn, **redis_options())
            stack.push_async_callback(client.aclose)
            await _when_up("Redis", client.ping)
            infra.redis_client = client
            infra.checks["redis"] = client.ping
        if kafka:
            servers = settings.kafka_bootstrap_servers
            replicas = settings.kafka_replication_factor
            await _when_up(
                "Kafka",
                lambda: create_topics(
                    servers, partitions=KAFKA_PARTITIONS, replication_factor=replicas
                ),
            )
            bus = KafkaEventBus(servers, client_id=client_id, retry=HANDLER_RETRY)
            await _when_up("Kafka", bus.start)
            stack.push_async_callback(bus.stop)
            infra.event_bus = bus
            infra.checks["kafka"] = lambda: _kafka_reachable(servers)
        yield infra


@asynccontextmanager
async def embedded(folder: str | Path | None = None) -> AsyncIterator[Infra]:
    """SQLite in `folder` (a temporary one by default), fakeredis and the in-memory bus.

    Needs ``commercekit[embedded]`` (fakeredis with Lua) and ``aiosqlite``.
    """
    import fakeredis  # noqa: PLC0415 (the embedded extra; only the demo needs it)

    async with AsyncExitStack() as stack:
        if folder is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="commercekit-demo-"))
        engine = create_async_engine(f"sqlite+aiosqlite:///{Path(folder) / 'demo.sqlite3'}")
        stack.push_async_callback(engine.dispose)
        await migrate(engine)
        client = fakeredis.FakeAsyncRedis()
        stack.push_async_callback(client.aclose)
        bus = InMemoryEventBus()
        await bus.start()
        stack.push_async_callback(bus.stop)
        infra = Infra(
            engine,
            async_sessionmaker(engine, expire_on_commit=False),
            embedded=True,
            redis_client=client,
            event_bus=bus,
        )
        infra.checks["database"] = lambda: ping(engine)
        yield infra
