"""The worker's gauges of the shop's state: holds, the outbox, payments, dead letters.

The worker reads them every few seconds from the database every service
shares (and the dead-letter topic), so each worker replica reports the same
numbers: take their ``max`` across replicas, not their sum. The tables are
the library's own, read as its outbox and its payment re-drive read them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from commercekit.events import EventBus, KafkaEventBus, TopicNames
from commercekit.events._tables import OutboxMessage
from commercekit.payments._tables import PaymentRow, SettlementRow
from commercekit.reservations.ledger import ReservationRow, StockRow
from reference_app.common.infra import Infra
from reference_app.settings import WorkerSettings

__all__ = ["StateMetrics", "dead_letter_counter"]

_HELD_UNITS = {
    "postgresql": text(
        "SELECT COALESCE(SUM((line->>1)::bigint), 0) FROM commercekit_reservations AS r"
        " CROSS JOIN LATERAL jsonb_array_elements(r.lines) AS line WHERE r.status = 'PENDING'"
    ),
    "sqlite": text(
        "SELECT COALESCE(SUM(json_extract(line.value, '$[1]')), 0)"
        " FROM commercekit_reservations AS r, json_each(r.lines) AS line"
        " WHERE r.status = 'PENDING'"
    ),
}
"""Units held by pending holds, summed over their lines (``lines`` is ``[[sku, quantity]...]``)."""


def _seconds_since(moment: dt.datetime | None, now: dt.datetime) -> float:
    if moment is None:
        return 0.0
    if moment.tzinfo is None:  # SQLite hands back naive UTC datetimes
        moment = moment.replace(tzinfo=dt.UTC)
    return max((now - moment).total_seconds(), 0.0)


@dataclass(frozen=True, slots=True)
class StateMetrics:
    """The gauges, each read by `observe` (``refapp_worker_*``).

    Attributes:
        holds_pending: holds not settled yet (PENDING in the ledger).
        held_units: units those holds keep from sale.
        sold_units: units ever sold (confirmed holds), over every SKU.
        holds_overdue: pending holds whose deadline has passed (the sweeper's work).
        expiry_lag: seconds the oldest overdue hold is past its deadline (0: none).
        outbox_backlog: events in the outbox not yet sent to the bus.
        outbox_oldest: seconds the oldest of them has waited (0: none).
        payments_without_outcome: payments no settlement has given an outcome yet.
        payment_outcome_wait: seconds the oldest of them has waited (0: none).
        dead_letters: events ever put on the dead-letter topic.
    """

    holds_pending: Gauge
    held_units: Gauge
    sold_units: Gauge
    holds_overdue: Gauge
    expiry_lag: Gauge
    outbox_backlog: Gauge
    outbox_oldest: Gauge
    payments_without_outcome: Gauge
    payment_outcome_wait: Gauge
    dead_letters: Gauge

    @classmethod
    def register(cls, registry: CollectorRegistry) -> StateMetrics:
        """Create the gauges in `registry` (once per registry)."""

        def gauge(name: str, documentation: str) -> Gauge:
            return Gauge(f"refapp_worker_{name}", documentation, registry=registry)

        return cls(
            holds_pending=gauge("holds_pending", "Holds not settled yet (PENDING in the ledger)."),
            held_units=gauge("held_units", "Units kept from sale by pending holds."),
            sold_units=gauge("sold_units", "Units ever sold (confirmed holds), over every SKU."),
            holds_overdue=gauge(
                "holds_overdue", "Pending holds whose deadline has passed (not expired yet)."
            ),
            expiry_lag=gauge(
                "expiry_lag_seconds", "Seconds the oldest overdue hold is past its deadline."
            ),
            outbox_backlog=gauge(
                "outbox_backlog", "Events written to the outbox and not yet sent to the bus."
            ),
            outbox_oldest=gauge(
                "outbox_oldest_seconds", "Seconds the oldest unsent event has waited in the outbox."
            ),
            payments_without_outcome=gauge(
                "payments_without_outcome", "Payments no settlement has given an outcome yet."
            ),
            payment_outcome_wait=gauge(
                "payment_outcome_wait_seconds",
                "Seconds the oldest payment without an outcome has waited for one.",
            ),
            dead_letters=gauge(
                "dead_letters",
                "Events ever put on the dead-letter topic (its partitions' end offsets, summed).",
            ),
        )

    async def observe(self, session: AsyncSession) -> None:
        """Read every database gauge in `session` (`dead_letters` is set apart)."""
        now = dt.datetime.now(dt.UTC)
        dialect = session.get_bind().dialect.name
        pending = ReservationRow.status == "PENDING"
        count, earliest = (
            await session.execute(
                select(func.count(), func.min(ReservationRow.expires_at)).where(
                    pending, ReservationRow.expires_at < now
                )
            )
        ).one()
        self.holds_overdue.set(count)
        self.expiry_lag.set(_seconds_since(earliest, now))
        self.holds_pending.set(
            await session.scalar(select(func.count()).select_from(ReservationRow).where(pending))
            or 0
        )
        self.held_units.set(await session.scalar(_HELD_UNITS[dialect]) or 0)
        self.sold_units.set(await session.scalar(select(func.sum(StockRow.sold))) or 0)
        count, oldest = (
            await session.execute(
                select(func.count(), func.min(OutboxMessage.created_at)).where(
                    OutboxMessage.sent_at.is_(None)
                )
            )
        ).one()
        self.outbox_backlog.set(count)
        self.outbox_oldest.set(_seconds_since(oldest, now))
        count, oldest = (
            await session.execute(
                select(func.count(), func.min(PaymentRow.created_at))
                .select_from(PaymentRow)
                .outerjoin(SettlementRow, SettlementRow.payment_id == PaymentRow.id)
                .where(SettlementRow.outcome.is_(None))  # no settlement row, or none finished
            )
        ).one()
        self.payments_without_outcome.set(count)
        self.payment_outcome_wait.set(_seconds_since(oldest, now))


DeadLetterCount = Callable[[], Awaitable[int]]


@asynccontextmanager
async def dead_letter_counter(
    settings: WorkerSettings, infra: Infra
) -> AsyncIterator[DeadLetterCount]:
    """A function counting the events on the dead-letter topic, open while the block runs.

    On Kafka it sums the end offsets of the topic's partitions (every letter
    ever written, whichever service wrote it); on the in-memory bus it counts
    the letters the bus holds.
    """
    bus: EventBus = infra.bus
    topic = getattr(bus, "topics", TopicNames()).dead_letter_topic
    if not isinstance(bus, KafkaEventBus):
        records = getattr(bus, "records", None)  # the in-memory bus keeps what it was sent

        async def count_kept() -> int:
            return len(records(topic)) if records is not None else 0

        yield count_kept
        return
    from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: PLC0415 (Kafka only)

    consumer: AIOKafkaConsumer | None = None

    async def count() -> int:
        nonlocal consumer
        if consumer is None:  # opened at the first reading: a failure fails that round only
            opening = AIOKafkaConsumer(
                bootstrap_servers=settings.kafka_bootstrap_servers,
                client_id="worker-dead-letters",
                enable_auto_commit=False,
            )
            try:
                await opening.start()
            except BaseException:
                await opening.stop()
                raise
            consumer = opening
        if consumer.partitions_for_topic(topic) is None:
            # Asking for an offset makes the client keep the topic's metadata (and refresh it).
            await consumer.end_offsets([TopicPartition(topic, 0)])
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            return 0
        ends = await consumer.end_offsets(partitions)
        return int(sum(ends.values()))

    try:
        yield count
    finally:
        if consumer is not None:
            await consumer.stop()
