"""The worker audits the orders after reconciling: real PostgreSQL and Redis.

An order whose line is changed behind the book shows in the
``refapp_worker_order_audit_problems`` gauge; the orders themselves are
left as they are (nothing is repaired).
"""

from __future__ import annotations

import asyncio
import uuid

import redis.asyncio as aioredis
from fastapi import FastAPI
from reference_app.common import service_app
from reference_app.common.infra import Infra
from reference_app.settings import WorkerSettings
from reference_app.worker.main import wire
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from commercekit.events import InMemoryEventBus
from commercekit.orders import OrderBook
from commercekit.orders._tables import OrderLineRow
from commercekit.reservations import DurableReservations, RedisReservationStore, ReservationLedger
from tests.integration.reference_app.test_worker_redrive import engine, redis_client

__all__ = ["engine", "redis_client"]  # the fixtures, shared with the re-drive tests


def problems(app: FastAPI) -> float | None:
    return app.state.metrics_registry.get_sample_value("refapp_worker_order_audit_problems")


async def test_the_worker_reports_an_order_changed_behind_the_book(
    engine: AsyncEngine, redis_client: aioredis.Redis
) -> None:
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    infra = Infra(engine, sessions, event_bus=InMemoryEventBus(), redis_client=redis_client)
    holds = DurableReservations(
        RedisReservationStore(redis_client, guarded=True), ReservationLedger(engine)
    )
    await holds.start()
    await holds.set_stock("SKU-1", 5)
    book = OrderBook(engine, stock=holds)
    order = await book.open(
        await holds.confirm((await holds.reserve([("SKU-1", 2)], ttl=60, owner="u-1")).id)
    )
    await book.ship(order.id, f"parcel-{uuid.uuid4().hex[:6]}", [("SKU-1", 1)])
    settings = WorkerSettings(environment="development", reconcile_interval_seconds=0.1)
    app = service_app("worker", lifespan=None)
    async with infra.bus, wire(app, settings, infra):
        await asyncio.sleep(0.5)  # a few audits
        assert problems(app) == 0
        async with engine.begin() as conn:
            await conn.execute(
                update(OrderLineRow)
                .where(OrderLineRow.order_id == order.id)
                .values(cancelled=OrderLineRow.cancelled + 1)
            )
        async with asyncio.timeout(15):
            while problems(app) == 0:  # noqa: ASYNC110 - polling the worker
                await asyncio.sleep(0.05)
        assert problems(app) == 1  # the SKU whose committed units differ
    line = (await book.get(order.id)).lines[0]
    assert (line.shipped, line.cancelled) == (1, 1)  # left as it was found
