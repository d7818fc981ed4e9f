"""The worker re-drives payments left without an outcome: real PostgreSQL and Redis.

Two worker replicas are wired on one database (each with its own metrics),
an in-memory bus stands for Kafka, and the inventory side's settlement is
subscribed to it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from reference_app.common import service_app
from reference_app.common.db import migrate
from reference_app.common.infra import Infra
from reference_app.settings import WorkerSettings
from reference_app.worker.main import wire
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from commercekit.events import Envelope, InMemoryEventBus
from commercekit.payments import (
    Payment,
    PaymentIntent,
    PaymentService,
    PaymentSettlement,
    RefundService,
    SettlementOutcome,
    SimulatedProcessor,
    settlement_outcome,
)
from commercekit.reservations import DurableReservations, RedisReservationStore, ReservationLedger
from commercekit.testing.servers import PostgresServer, RedisServer

AGE = 3.0
"""``PAYMENT_REDRIVE_AFTER_SECONDS`` of these workers: long enough that a loaded machine
settles the old payment before the young one comes of age."""


@pytest.fixture
async def engine(postgres_server: PostgresServer) -> AsyncIterator[AsyncEngine]:
    url = postgres_server.create_database(f"worker_{uuid.uuid4().hex[:10]}")
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://"))
    await migrate(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    # A database of its own: the worker's store uses the default key prefix.
    client = aioredis.from_url(redis_server.url.rsplit("/", 1)[0] + "/11")
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


@asynccontextmanager
async def workers(infra: Infra, replicas: int) -> AsyncIterator[list[FastAPI]]:
    settings = WorkerSettings(
        environment="development",
        payment_redrive_after_seconds=AGE,
        payment_redrive_interval_seconds=0.1,
        outbox_poll_seconds=0.05,
        sweep_interval_seconds=0.5,
        reconcile_interval_seconds=3600,
    )
    apps = []
    async with AsyncExitStack() as stack:
        for _ in range(replicas):
            app = service_app("worker", lifespan=None)
            await stack.enter_async_context(wire(app, settings, infra))
            apps.append(app)
        yield apps


def redriven(apps: list[FastAPI]) -> float:
    return sum(
        app.state.metrics_registry.get_sample_value("refapp_worker_payments_redriven_total") or 0
        for app in apps
    )


async def test_two_workers_redrive_a_lost_payment_once_and_leave_a_young_one_alone(
    engine: AsyncEngine, redis_client: aioredis.Redis
) -> None:
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    bus = InMemoryEventBus()
    infra = Infra(engine, sessions, event_bus=bus, redis_client=redis_client)
    holds = DurableReservations(
        RedisReservationStore(redis_client, guarded=True), ReservationLedger(engine)
    )
    await holds.start()
    await holds.set_stock("SKU-1", 5)
    settlement = PaymentSettlement(holds, RefundService(sessions, None))
    lose: set[str] = set()  # reservations whose payment's first outcome event is lost

    async def lossy(event: Envelope[Any]) -> None:
        if event.data.reservation_id in lose:  # acknowledged, never settled (a bug, a crash)
            lose.discard(event.data.reservation_id)
            return
        await settlement.handler(event)

    bus.subscribe("inventory", lossy, types=["payment.confirmed", "payment.failed"])
    payments = PaymentService(sessions, SimulatedProcessor(), reservations=holds)

    async def lost_payment() -> Payment:
        hold = await holds.reserve([("SKU-1", 1)], ttl=60, owner="u-1")
        lose.add(hold.id)  # before paying: the relay may publish the event at once
        return await payments.pay(
            PaymentIntent(
                idempotency_key=str(uuid.uuid4()),
                reservation_id=hold.id,
                user_id="u-1",
                amount=Decimal("3.00"),
                currency="USD",
                payment_method="tok_success",
            )
        )

    old = await lost_payment()
    async with bus, workers(infra, replicas=2) as apps:
        await asyncio.sleep(AGE / 3)
        young = await lost_payment()
        async with asyncio.timeout(15):
            while await settlement_outcome(sessions, old.id) is None:  # noqa: ASYNC110 - polling the worker
                await asyncio.sleep(0.05)
        assert await settlement_outcome(sessions, young.id) is None  # not old enough yet
        assert redriven(apps) == 1
        async with asyncio.timeout(15):
            while await settlement_outcome(sessions, young.id) is None:  # noqa: ASYNC110 - polling the worker
                await asyncio.sleep(0.05)
        await asyncio.sleep(AGE + 0.5)  # settled: neither is re-driven again
        assert redriven(apps) == 2
    assert await settlement_outcome(sessions, old.id) is SettlementOutcome.CONFIRMED
    assert await settlement_outcome(sessions, young.id) is SettlementOutcome.CONFIRMED
    level = await holds.stock("SKU-1")
    assert (level.available, level.held, level.sold) == (3, 0, 2)
