"""Idempotent consumers: a redelivered event has no second effect.

Kafka delivers at least once, so a handler may see an event twice (after a
crash, a rebalance, a retried publish). Stores remember which events a
consumer has processed, keyed by ``(consumer, event id)``. Pick the wrapper
by where the effect happens:

**PostgreSQL, in the effect's transaction (exactly once in effect).** When
the effect is a database write, record the event in the same transaction:
both commit, or neither does.

```python
store = SqlProcessedEventStore()


async def on_paid(session: AsyncSession, event: Envelope[Any]) -> None:
    await confirm_reservation(session, event.data.reservation_id)


bus.subscribe("inventory", store.handler(sessions, "inventory", on_paid))
```

**Effect first, then the record (at least once, never lost).** When the
effect is elsewhere (an email, an HTTP call) and accepts an idempotency key,
derive the key from the event id and wrap the handler with `record_after`:

```python
store = SqlClaims(sessions)  # or RedisProcessedEventStore(redis_client)


async def send_mail(event: Envelope[Any]) -> None:
    await provider.send(..., idempotency_key=f"welcome/{event.id}")


bus.subscribe("email", record_after(store, "email", send_mail))
```

An event already recorded is skipped; otherwise the handler runs, and only
once it returned is the event recorded as done. A crash at any point before
the record (before the call, during it, after it) leaves nothing recorded,
so the redelivery runs the handler again with the same key, and the
provider, which deduplicates on the key, makes one effect of the two calls.

**Claim first, then the effect (at most once).** `idempotent` claims the
event before the handler runs and releases the claim when the handler
raises. Know the crash window: if the process dies after the claim and
before the effect completes, the claim stays (until its TTL) and the
redelivered event is skipped: that event gets *at most one* effect, maybe
none. Use it only where a lost effect is better than a repeated one.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from commercekit.events.bus import Handler
from commercekit.events.envelope import Envelope

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

__all__ = [
    "InMemoryProcessedEventStore",
    "ProcessedEventStore",
    "RedisProcessedEventStore",
    "SessionHandler",
    "SqlClaims",
    "SqlProcessedEventStore",
    "idempotent",
    "record_after",
]

log = logging.getLogger("commercekit.events")

SessionHandler = Callable[["AsyncSession", Envelope[Any]], Awaitable[None]]
"""A handler that makes its effect in the session it is given."""

_DEFAULT_TTL = dt.timedelta(days=7)


@runtime_checkable
class ProcessedEventStore(Protocol):
    """Remembers the events each consumer has claimed (or recorded as done)."""

    async def claim(self, consumer: str, event_id: str) -> bool:
        """Claim an event for a consumer; False if it was claimed before (skip it)."""
        ...

    async def seen(self, consumer: str, event_id: str) -> bool:
        """Whether the event was claimed for the consumer (and the claim still lasts)."""
        ...

    async def release(self, consumer: str, event_id: str) -> None:
        """Forget a claim (its handler failed), so a redelivery runs it again."""
        ...


def idempotent(store: ProcessedEventStore, consumer: str, handler: Handler) -> Handler:
    """Wrap `handler` so each event id runs it at most once for `consumer`.

    The claim is released when the handler raises, so the bus's retry (or a
    redelivery) runs it again.
    """

    async def run_once(event: Envelope[Any]) -> None:
        if not await store.claim(consumer, event.id):
            log.debug("%s: event %s was already processed; skipped", consumer, event.id)
            return
        try:
            await handler(event)
        except BaseException:
            await store.release(consumer, event.id)
            raise

    return run_once


def record_after(store: ProcessedEventStore, consumer: str, handler: Handler) -> Handler:
    """Wrap `handler` so an event is recorded as done for `consumer` only after it returned.

    An event already recorded is skipped. Nothing is written before the
    handler's effect: a crash before, during or after it (but before the
    record) means the redelivered event runs the handler again. The effect
    is therefore at least once; make it idempotent itself, with a key
    derived from the event id (``f"welcome/{event.id}"``), so that a second
    call is no second effect. Two deliveries running at once (a rebalance
    mid-handler) both call the handler, with the same key.
    """

    async def effect_then_record(event: Envelope[Any]) -> None:
        if await store.seen(consumer, event.id):
            log.debug("%s: event %s was already processed; skipped", consumer, event.id)
            return
        await handler(event)
        await store.claim(consumer, event.id)

    return effect_then_record


class InMemoryProcessedEventStore:
    """A `ProcessedEventStore` in a dict, for tests and the embedded mode.

    Args:
        ttl: how long a claim lasts.
    """

    def __init__(self, *, ttl: dt.timedelta = _DEFAULT_TTL) -> None:
        self.ttl = ttl.total_seconds()
        self._claims: dict[tuple[str, str], float] = {}

    async def claim(self, consumer: str, event_id: str) -> bool:
        """See `ProcessedEventStore.claim`."""
        now = time.monotonic()
        expires = self._claims.get((consumer, event_id))
        if expires is not None and expires > now:
            return False
        self._claims[consumer, event_id] = now + self.ttl
        return True

    async def seen(self, consumer: str, event_id: str) -> bool:
        """See `ProcessedEventStore.seen`."""
        expires = self._claims.get((consumer, event_id))
        return expires is not None and expires > time.monotonic()

    async def release(self, consumer: str, event_id: str) -> None:
        """See `ProcessedEventStore.release`."""
        self._claims.pop((consumer, event_id), None)


class RedisProcessedEventStore:
    """A `ProcessedEventStore` on Redis: one key per claim, ``SET NX`` with a TTL.

    Args:
        client: a redis-py asyncio client.
        prefix: put before every key (``<prefix><consumer>:<event id>``).
        ttl: how long a claim lasts: longer than any redelivery can come late.
    """

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = "commercekit:processed:",
        ttl: dt.timedelta = _DEFAULT_TTL,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl = ttl

    def _key(self, consumer: str, event_id: str) -> str:
        return f"{self.prefix}{consumer}:{event_id}"

    async def claim(self, consumer: str, event_id: str) -> bool:
        """See `ProcessedEventStore.claim`."""
        created = await self.client.set(self._key(consumer, event_id), b"1", nx=True, px=self.ttl)
        return bool(created)

    async def seen(self, consumer: str, event_id: str) -> bool:
        """See `ProcessedEventStore.seen`."""
        return bool(await self.client.exists(self._key(consumer, event_id)))

    async def release(self, consumer: str, event_id: str) -> None:
        """See `ProcessedEventStore.release`."""
        await self.client.delete(self._key(consumer, event_id))


class SqlProcessedEventStore:
    """Records processed events in ``commercekit_processed_events``, in your transaction.

    The row's primary key is ``(consumer, event_id)``: of two transactions
    claiming one event, the second waits for the first and, if it committed,
    gets False. Run `commercekit.sql.migrate` to create the table. Needs
    ``commercekit[postgres]`` (PostgreSQL, or SQLite for the embedded mode).
    """

    async def claim(self, session: AsyncSession, consumer: str, event_id: str) -> bool:
        """Record the event in `session`'s transaction; False if it was recorded before."""
        from sqlalchemy import insert  # noqa: PLC0415 - optional extra
        from sqlalchemy.exc import IntegrityError  # noqa: PLC0415

        from commercekit.events._tables import ProcessedEvent  # noqa: PLC0415
        from commercekit.sql import ON_CONFLICT_DIALECTS, insert_or_ignore  # noqa: PLC0415

        values = {"consumer": consumer, "event_id": event_id}
        dialect = session.get_bind().dialect.name
        if dialect in ON_CONFLICT_DIALECTS:
            statement = insert_or_ignore(dialect, ProcessedEvent, values)
            inserted = await session.execute(statement.returning(ProcessedEvent.event_id))
            return inserted.first() is not None
        try:
            async with session.begin_nested():
                await session.execute(insert(ProcessedEvent).values(values))
        except IntegrityError:
            return False
        return True

    async def seen(self, session: AsyncSession, consumer: str, event_id: str) -> bool:
        """Whether the consumer has processed the event (committed or in this transaction)."""
        from commercekit.events._tables import ProcessedEvent  # noqa: PLC0415

        return await session.get(ProcessedEvent, (consumer, event_id)) is not None

    async def release(self, session: AsyncSession, consumer: str, event_id: str) -> None:
        """Forget one processed event in `session`'s transaction (it may be handled again)."""
        from sqlalchemy import delete  # noqa: PLC0415

        from commercekit.events._tables import ProcessedEvent  # noqa: PLC0415

        await session.execute(
            delete(ProcessedEvent).where(
                ProcessedEvent.consumer == consumer, ProcessedEvent.event_id == event_id
            )
        )

    async def purge(self, session: AsyncSession, before: dt.datetime) -> int:
        """Forget the events processed before `before`; return how many."""
        from sqlalchemy import delete  # noqa: PLC0415

        from commercekit.events._tables import ProcessedEvent  # noqa: PLC0415

        result = await session.execute(
            delete(ProcessedEvent).where(ProcessedEvent.processed_at < before)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    def handler(
        self,
        sessions: async_sessionmaker[AsyncSession],
        consumer: str,
        handler: SessionHandler,
    ) -> Handler:
        """A bus handler: one transaction per event, holding the record and the effect.

        Args:
            sessions: makes the sessions (one per event).
            consumer: the consumer's name (usually its group).
            handler: makes the effect in the session; it must not commit.
        """

        async def in_transaction(event: Envelope[Any]) -> None:
            async with sessions() as session, session.begin():
                if not await self.claim(session, consumer, event.id):
                    log.debug("%s: event %s was already processed; skipped", consumer, event.id)
                    return
                await handler(session, event)

        return in_transaction


class SqlClaims:
    """A `ProcessedEventStore` on ``commercekit_processed_events``, each claim committed at once.

    For handlers whose effect is outside the database (a mail, an HTTP
    call): with `record_after`, the event is recorded once the effect is
    done (the effect carries an idempotency key); with `idempotent`, the
    claim commits before the effect, and a failed effect's `release`
    deletes it. When the effect is a database change, prefer
    `SqlProcessedEventStore.handler`, which records the event in the
    effect's own transaction.

    Args:
        sessions: makes one session per claim or release.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self.store = SqlProcessedEventStore()

    async def claim(self, consumer: str, event_id: str) -> bool:
        """See `ProcessedEventStore.claim`."""
        async with self.sessions() as session, session.begin():
            return await self.store.claim(session, consumer, event_id)

    async def seen(self, consumer: str, event_id: str) -> bool:
        """See `ProcessedEventStore.seen`."""
        async with self.sessions() as session:
            return await self.store.seen(session, consumer, event_id)

    async def release(self, consumer: str, event_id: str) -> None:
        """See `ProcessedEventStore.release`."""
        async with self.sessions() as session, session.begin():
            await self.store.release(session, consumer, event_id)
