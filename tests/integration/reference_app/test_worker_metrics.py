"""The worker's state gauges read real PostgreSQL and Kafka.

Rows are written straight into the library's tables, so each gauge has a
known right answer: holds (one overdue), units sold, unsent events and
payments without an outcome, and letters on the dead-letter topic.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry
from reference_app.common.db import migrate
from reference_app.common.infra import Infra
from reference_app.settings import WorkerSettings
from reference_app.worker.metrics import StateMetrics, dead_letter_counter
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from commercekit.events import DeadLetter, KafkaEventBus, create_topics
from commercekit.events._tables import OutboxMessage
from commercekit.payments._tables import PaymentRow, SettlementRow
from commercekit.reservations import Reservation, ReservationLine, ReservationStatus
from commercekit.reservations.ledger import ReservationLedger, StockRow
from commercekit.testing.servers import KafkaServer, PostgresServer


@pytest.fixture
async def engine(postgres_server: PostgresServer) -> AsyncIterator[AsyncEngine]:
    url = postgres_server.create_database(f"worker_metrics_{uuid.uuid4().hex[:10]}")
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://"))
    await migrate(engine)
    yield engine
    await engine.dispose()


def hold(
    now: dt.datetime, status: ReservationStatus, expires_in: float, *lines: tuple[str, int]
) -> Reservation:
    return Reservation(
        id=uuid.uuid4().hex,
        status=status,
        owner="u-1",
        lines=tuple(ReservationLine(sku=sku, quantity=q) for sku, q in lines),
        created_at=now - dt.timedelta(minutes=5),
        updated_at=now - dt.timedelta(minutes=5),
        expires_at=now + dt.timedelta(seconds=expires_in),
    )


def payment(now: dt.datetime, age: float) -> PaymentRow:
    return PaymentRow(
        id=uuid.uuid4().hex,
        idempotency_key=uuid.uuid4().hex,
        fingerprint="f" * 64,
        reservation_id=uuid.uuid4().hex,
        user_id="u-1",
        amount=Decimal("3.00"),
        currency="USD",
        status="SUCCEEDED",
        created_at=now - dt.timedelta(seconds=age),
    )


def settlement(of: PaymentRow, outcome: str | None) -> SettlementRow:
    return SettlementRow(
        payment_id=of.id,
        reservation_id=of.reservation_id,
        status="SUCCEEDED",
        amount=of.amount,
        currency=of.currency,
        outcome=outcome,
    )


async def test_the_gauges_count_holds_the_outbox_and_payments(engine: AsyncEngine) -> None:
    # Ages are measured from now, when the test runs (not when the module was imported).
    now = dt.datetime.now(dt.UTC)
    ledger = ReservationLedger(engine)
    for reservation in (
        hold(now, ReservationStatus.PENDING, 600, ("SKU-1", 2), ("SKU-2", 1)),
        hold(now, ReservationStatus.PENDING, -50, ("SKU-1", 1)),  # overdue by 50 s
        hold(now, ReservationStatus.PENDING, -10, ("SKU-2", 4)),  # overdue by 10 s
        hold(now, ReservationStatus.CONFIRMED, -100, ("SKU-1", 7)),  # settled: not held, not late
        hold(now, ReservationStatus.EXPIRED, -200, ("SKU-2", 9)),
    ):
        assert await ledger.record_created(reservation)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    lost, waiting, settled = payment(now, age=100), payment(now, age=40), payment(now, age=300)
    async with sessions() as session, session.begin():
        session.add_all([StockRow(sku="SKU-1", added=20, sold=7), StockRow(sku="SKU-2", added=9)])
        session.add_all(
            [
                OutboxMessage(
                    event_id=f"e-{n}",
                    event_type="reservation.created",
                    key="k",
                    body="{}",
                    created_at=now - dt.timedelta(seconds=age),
                    sent_at=sent,
                )
                for n, (age, sent) in enumerate([(30, None), (5, None), (90, now)])
            ]
        )
        session.add_all([lost, waiting, settled])
        await session.flush()
        session.add_all([settlement(waiting, None), settlement(settled, "confirmed")])

    registry = CollectorRegistry()
    gauges = StateMetrics.register(registry)
    async with sessions() as session:
        await gauges.observe(session)

    def value(name: str) -> float:
        found = registry.get_sample_value(f"refapp_worker_{name}")
        assert found is not None, name
        return found

    assert value("holds_pending") == 3
    assert value("held_units") == 2 + 1 + 1 + 4
    assert value("sold_units") == 7
    assert value("holds_overdue") == 2
    assert 50 <= value("expiry_lag_seconds") < 80
    assert value("outbox_backlog") == 2
    assert 30 <= value("outbox_oldest_seconds") < 60
    assert value("payments_without_outcome") == 2  # no settlement row, and an unfinished one
    assert 100 <= value("payment_outcome_wait_seconds") < 130


async def test_the_dead_letter_count_follows_the_kafka_topic(
    engine: AsyncEngine, kafka_server: KafkaServer
) -> None:
    servers = kafka_server.bootstrap_servers
    await create_topics(servers, partitions=2)
    bus = KafkaEventBus(servers, client_id="worker-metrics-test")
    settings = WorkerSettings(environment="development", kafka_broker=servers)
    infra = Infra(engine, async_sessionmaker(engine), event_bus=bus)
    await bus.start()
    try:
        async with dead_letter_counter(settings, infra) as count:
            before = await count()  # the session's Kafka: other tests may have left letters
            for offset in range(3):
                await bus.dead_letter(
                    DeadLetter(
                        value=b"{}",
                        key=b"k",
                        reason="cannot decode",
                        error="MalformedEvent",
                        topic="reservations",
                        partition=0,
                        offset=offset,
                        group="test",
                        attempts=1,
                    )
                )
            assert await count() == before + 3
    finally:
        await bus.stop()
