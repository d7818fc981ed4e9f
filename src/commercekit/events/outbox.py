"""The transactional outbox: an event is stored with the change it announces.

```python
outbox = Outbox()

async with sessions() as session, session.begin():
    session.add(reservation_row)
    await outbox.add(session, Envelope.wrap(ReservationCreated(...), source="inventory"))
# committed together, or not at all

async with OutboxRelay(sessions, bus):  # publishes the rows, in order, marks them sent
    ...
```

The relay reads unsent rows in insertion order (``SELECT ... FOR UPDATE SKIP
LOCKED`` on PostgreSQL), publishes them through any `EventBus`, and marks them
sent in the same transaction. While Kafka is down the rows wait, and the
relay retries with backoff; once it is back, everything is delivered. A
publish that failed half-way is retried whole, so an event may be published
twice: consumers deduplicate by event id (`commercekit.events.idempotency`).
An event keeps the trace context it was added in (its ``traceparent``), so
its consumers continue the request's trace however late the relay sends it.

On PostgreSQL, `Outbox.add` also sends a ``NOTIFY`` on `OUTBOX_CHANNEL`,
which PostgreSQL delivers when (and only if) the transaction commits; every
relay listens on it, so an event leaves within a round trip of its
commit instead of at the next poll. Polling stays, as the fallback for a
lost notification or a listening connection that died.

Several relays can run at once (one per replica): each locks its own rows,
and a relay leaves alone the rows of a key that has an earlier row still
unsent (held by another relay), so the events of one key are published in
the order they were added. Events of one key written by concurrent
transactions are ordered by their insertion (the row id), which is the
order of commits when the transactions lock the same aggregate row.

Needs ``commercekit[postgres]`` and the ``commercekit_outbox`` table
(`commercekit.sql.migrate`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from commercekit._lifecycle import AsyncLifecycle
from commercekit.errors import BackendUnavailable, MalformedEvent, MissingExtraError
from commercekit.events._dispatch import wait_or_stop
from commercekit.events.bus import EventBus, EventRetry
from commercekit.events.catalog import CATALOG, Catalog
from commercekit.events.envelope import Envelope

try:
    from sqlalchemy import func, insert, select, text, update
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.ext.asyncio import (
        AsyncConnection,
        AsyncEngine,
        AsyncSession,
        async_sessionmaker,
    )

    from commercekit.events._tables import OutboxMessage
    from commercekit.sql import dialect_of
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtraError("postgres", __name__) from exc

__all__ = ["OUTBOX_CHANNEL", "Outbox", "OutboxMessage", "OutboxRelay"]

log = logging.getLogger("commercekit.events")

OUTBOX_CHANNEL = "commercekit_outbox"
"""The PostgreSQL ``NOTIFY`` channel that wakes the relays when events are committed."""

_NOTIFY = text(f"NOTIFY {OUTBOX_CHANNEL}")


class Outbox:
    """Writes events into ``commercekit_outbox`` in the caller's transaction.

    Args:
        catalog: the events it accepts (the relay decodes them with it).
    """

    def __init__(self, catalog: Catalog = CATALOG) -> None:
        self.catalog = catalog

    async def add(self, session: AsyncSession | AsyncConnection, *events: Envelope[Any]) -> None:
        """Add events to the transaction of `session` (or a connection); sent once it commits.

        An event without a ``traceparent`` is stamped with the current trace
        context now (the relay that publishes it later runs in none); the
        row's ``trace_id`` finds an order's events in the table.

        Raises:
            UnknownEventType: an event's type is not in the catalog.
        """
        rows = []
        for event in events:
            self.catalog[event.type]  # refuse a type the relay could not decode
            stamped = event.in_trace()
            trace = stamped.trace
            rows.append(
                {
                    "event_id": stamped.id,
                    "event_type": stamped.type,
                    "key": stamped.key,
                    "body": stamped.to_json().decode(),
                    "trace_id": None if trace is None else trace.trace_id,
                }
            )
        if isinstance(session, AsyncSession):
            session.add_all(OutboxMessage(**row) for row in rows)
            await session.flush()
        elif rows:
            await session.execute(insert(OutboxMessage), rows)
        if rows and dialect_of(session) == "postgresql":
            # Delivered at commit, dropped on rollback; repeats in one transaction fold.
            await session.execute(_NOTIFY)

    async def pending(self, session: AsyncSession) -> int:
        """How many events wait to be sent."""
        count = await session.scalar(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.sent_at.is_(None))
        )
        return int(count or 0)


class OutboxRelay(AsyncLifecycle):
    """Publishes the outbox's rows through a bus, in order, as an asyncio task.

    Use it as an async context manager, or call `start` and `stop`; or call
    `relay_once` from your own loop or scheduler.

    Args:
        sessions: makes the database sessions.
        bus: where the events go (a started bus).
        catalog: decodes the stored events.
        batch_size: rows per transaction.
        poll_interval: seconds between looks at an empty outbox; `notify`, and on
            PostgreSQL every commit of an `Outbox.add`, wake it sooner.
        retry: the backoff after a failure (Kafka or the database down).
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        bus: EventBus,
        *,
        catalog: Catalog = CATALOG,
        batch_size: int = 200,
        poll_interval: float = 0.5,
        retry: EventRetry | None = None,
    ) -> None:
        self.sessions = sessions
        self.bus = bus
        self.catalog = catalog
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.retry = retry or EventRetry(initial_backoff=0.2, max_backoff=5.0)
        self.published = 0
        """How many events this relay has published (a retried batch counts again)."""
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def relay_once(self) -> int:
        """Publish one batch of unsent rows and mark them sent; return how many.

        Raises:
            PublishError: the bus did not take the batch; the rows stay unsent.
        """
        async with self.sessions() as session, session.begin():
            rows = list(
                await session.scalars(
                    select(OutboxMessage)
                    .where(OutboxMessage.sent_at.is_(None))
                    .order_by(OutboxMessage.id)
                    .limit(self.batch_size)
                    .with_for_update(skip_locked=True)
                )
            )
            if not rows:
                return 0
            ready = await self._in_key_order(session, rows)
            if not ready:
                return 0
            await self.bus.publish_many([event for _, event in ready])
            ids = [row.id for row, _ in ready]
            await session.execute(
                update(OutboxMessage).where(OutboxMessage.id.in_(ids)).values(sent_at=func.now())
            )
        self.published += len(ready)
        return len(ready)

    async def _in_key_order(
        self, session: AsyncSession, rows: list[OutboxMessage]
    ) -> list[tuple[OutboxMessage, Envelope[Any]]]:
        """The rows no earlier unsent row of their key waits for, decoded."""
        ours = [row.id for row in rows]
        blocked = set(
            await session.scalars(
                select(OutboxMessage.key)
                .where(
                    OutboxMessage.sent_at.is_(None),
                    OutboxMessage.key.in_({row.key for row in rows}),
                    OutboxMessage.id < max(ours),
                    OutboxMessage.id.not_in(ours),
                )
                .distinct()
            )
        )
        ready: list[tuple[OutboxMessage, Envelope[Any]]] = []
        for row in rows:
            if row.key in blocked:
                continue
            try:
                ready.append((row, self.catalog.decode(row.body)))
            except MalformedEvent as exc:
                # Holding the key back keeps its order; the row waits for a fix.
                log.error("outbox row %s (%s) cannot be decoded: %s", row.id, row.event_id, exc)
                blocked.add(row.key)
        return ready

    def notify(self) -> None:
        """Look at the outbox now (call it after committing events)."""
        self._wake.set()

    def _engine(self) -> AsyncEngine | None:
        bind = self.sessions.kw.get("bind")
        if isinstance(bind, AsyncEngine) and bind.dialect.name == "postgresql":
            return bind
        return None

    async def _listen(self, engine: AsyncEngine) -> None:
        """Listen on `OUTBOX_CHANNEL` while the relay runs; reconnect if the connection dies."""
        failures = 0
        while not self._stopping.is_set():
            try:
                await self._listen_once(engine)
                failures = 0
            except Exception as exc:  # any failure: polling goes on meanwhile
                failures += 1
                log.debug("outbox relay: cannot listen for commits (%r); polling", exc)
            if not self._stopping.is_set():
                await wait_or_stop(self._stopping, self.retry.backoff(max(failures, 1)))

    async def _listen_once(self, engine: AsyncEngine) -> None:
        """One listening connection, until the relay stops or the connection is lost."""
        lost = asyncio.Event()

        def wake(*_: object) -> None:
            self._wake.set()

        def gone(*_: object) -> None:
            lost.set()

        async with engine.connect() as conn:
            driver: Any = (await conn.get_raw_connection()).driver_connection
            await driver.add_listener(OUTBOX_CHANNEL, wake)
            driver.add_termination_listener(gone)
            try:
                self._wake.set()  # whatever was committed while no one listened
                waits = {
                    asyncio.ensure_future(self._stopping.wait()),
                    asyncio.ensure_future(lost.wait()),
                }
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiting in waits:
                        waiting.cancel()
            finally:
                driver.remove_termination_listener(gone)
                if not lost.is_set():  # back to the pool without our listener
                    await driver.remove_listener(OUTBOX_CHANNEL, wake)

    async def _run(self) -> None:
        engine = self._engine()
        listener = asyncio.create_task(self._listen(engine)) if engine is not None else None
        try:
            await self._relay()
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener

    async def _relay(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                sent = await self.relay_once()
            except (BackendUnavailable, SQLAlchemyError, OSError) as exc:
                failures += 1
                log.warning("outbox relay: %r; retrying", exc)
                await wait_or_stop(self._stopping, self.retry.backoff(failures))
                continue
            failures = 0
            if sent < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    async def start(self) -> None:
        """Start relaying in a background task."""
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Finish the batch in flight, then stop."""
        if self._task is None:
            return
        self._stopping.set()
        self._wake.set()
        task, self._task = self._task, None
        await task
