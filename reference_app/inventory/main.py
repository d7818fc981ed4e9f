"""The inventory service's app factory.

```console
$ uvicorn --factory reference_app.inventory.main:app_from_env --port 8002
```

Stock and holds are commercekit's `DurableReservations` (Redis Lua holds,
PostgreSQL ledger); payment events are settled by `PaymentSettlement`,
whose refunds are recorded here and made by the payment service.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import Counter

from commercekit.events import Outbox
from commercekit.orders import OrderBook
from commercekit.payments import PaymentSettlement, RefundService
from commercekit.plugins import PluginManager
from commercekit.reservations import (
    DurableReservations,
    RedisReservationStore,
    ReservationLedger,
    StockWatch,
)
from reference_app.common import configure_logging, service_app
from reference_app.common.background import track_consumer_lag
from reference_app.common.infra import Infra, connect
from reference_app.common.runtime import tune_gc
from reference_app.inventory.deps import ChannelCache, InventoryServices, ProductCache
from reference_app.inventory.orders import router as orders_router
from reference_app.inventory.routes import LEAN_ROUTES, router
from reference_app.settings import InventorySettings

__all__ = ["CONSUMER_GROUP", "SOURCE", "app_from_env", "create_app", "reservations_of", "wire"]

log = logging.getLogger("reference_app.inventory")

CONSUMER_GROUP = "inventory"
"""The Kafka consumer group settling payment events."""

SOURCE = "inventory-service"
"""The ``source`` of the events this service writes."""


def reservations_of(
    settings: InventorySettings, infra: Infra, *, plugins: PluginManager | None = None
) -> DurableReservations:
    """The reservation store on `infra`, as the inventory service and the worker use it."""
    store = RedisReservationStore(
        infra.redis,
        shards=settings.redis_shards,
        guarded=True,  # the ledger's restore marker guards every write (see DurableReservations)
        # Coalesce concurrent calls into pipelines (fakeredis gains nothing from it).
        pipeline=not infra.embedded,
    )
    return DurableReservations(
        store, ReservationLedger(infra.engine), plugins=plugins, batch_records=not infra.embedded
    )


@asynccontextmanager
async def wire(app: FastAPI, settings: InventorySettings, infra: Infra) -> AsyncIterator[None]:
    """Build the inventory service on `infra` (``app.state.inventory``) and settle payments."""
    plugins = PluginManager()
    reservations = reservations_of(settings, infra, plugins=plugins)
    await reservations.start()  # restores Redis from the ledger if Redis lost its data
    registry = app.state.metrics_registry
    outcomes = Counter(
        "refapp_inventory_reservations",
        "Reserve and cancel requests, by outcome.",
        ["outcome"],
        registry=registry,
    )
    # No processor here: refunds are recorded with their refund.requested
    # event, and the payment service makes them.
    refunds = RefundService(infra.sessions, None, source=SOURCE)
    products = ProductCache(infra.sessions)
    services = InventoryServices(
        settings=settings,
        engine=infra.engine,
        sessions=infra.sessions,
        products=products,
        channels=ChannelCache(infra.sessions, ttl=settings.channel_cache_seconds),
        reservations=reservations,
        # A cancellation puts units back and requests what they were paid back
        # (the payment split over the lines by the products' prices); each
        # change's event goes out through the outbox.
        orders=OrderBook(
            infra.engine,
            stock=reservations,
            outbox=Outbox(),
            source=SOURCE,
            refunds=refunds,
            prices=products.unit_prices,
        ),
        watch=StockWatch(infra.engine, Outbox(), source=SOURCE),
        outcomes=outcomes,
    )
    settlement = PaymentSettlement(
        reservations,
        refunds,
        plugins=plugins,
        prices=services.total,
        consumer=CONSUMER_GROUP,
        orders=services.orders,  # opened in the transaction that records the payment
    )
    app.state.inventory = services
    infra.bus.subscribe(
        CONSUMER_GROUP, settlement.handler, types=["payment.confirmed", "payment.failed"]
    )
    async with track_consumer_lag(registry, infra.bus, CONSUMER_GROUP, service="inventory"):
        yield


def create_app(settings: InventorySettings, *, lean: bool = True) -> FastAPI:
    """The inventory service, wired to the servers `settings` names.

    With `lean`, the reserve is answered without FastAPI's per-request work
    (`reference_app.common.lean`); without it, by its FastAPI route alone
    (the same answers, a third more CPU per reserve).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with connect(settings, client_id=SOURCE, redis=True, kafka=True) as infra:
            app.state.readiness.update(infra.checks)
            async with wire(app, settings, infra):
                log.info("inventory service ready")
                yield

    app = service_app(
        "inventory",
        lifespan=lifespan,
        description="Products, stock and reservations; settles payment events.",
        lean=LEAN_ROUTES if lean else (),
    )
    app.include_router(router)
    app.include_router(orders_router)
    return app


def app_from_env() -> FastAPI:
    """``uvicorn --factory`` entry point: settings from the environment, JSON logs."""
    settings = InventorySettings()
    configure_logging("inventory", settings.log_level)
    app = create_app(settings)
    tune_gc()  # after the imports and the app are made: they are never garbage
    return app
