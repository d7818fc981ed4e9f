"""The worker's app factory: background jobs, plus ``/health``, ``/ready`` and ``/metrics``.

```console
$ uvicorn --factory reference_app.worker.main:app_from_env --port 8005
```

Every job is safe with several workers at once:

- the expiry sweeper: each hold is expired by exactly one sweeper;
- the outbox relay: each relay locks the rows it sends (``SKIP LOCKED``);
- reconciliation (Redis against the PostgreSQL ledger), then the orders'
  audit against the stock journal and their payments (`OrderBook.audit`,
  the ``refapp_worker_order_audit_problems`` gauge): one worker at a time,
  under a PostgreSQL advisory lock;
- the payment re-drive: a payment left without an outcome for
  ``payment_redrive_after_seconds`` gets its outcome event sent again
  (`redrive_payments`; each payment is claimed by one worker);
- the stock watch: the stock journal's new rows become ``stock.adjusted``,
  ``stock.low``, ``stock.out`` and ``stock.back_in`` events in the outbox
  (`StockWatch`; one worker at a time, under its advisory lock).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import fields

from fastapi import FastAPI
from prometheus_client import Counter, Gauge
from sqlalchemy import text

from commercekit.events import Outbox, OutboxRelay
from commercekit.orders import OrderBook
from commercekit.payments import RefundService, redrive_payments
from commercekit.plugins import PluginManager
from commercekit.reservations import (
    DurableReservations,
    ExpirySweeper,
    Reservation,
    StockWatch,
    acting_as,
)
from reference_app.common import configure_logging, service_app
from reference_app.common.background import every
from reference_app.common.infra import Infra, connect
from reference_app.common.runtime import tune_gc
from reference_app.inventory.main import reservations_of
from reference_app.settings import WorkerSettings
from reference_app.worker.metrics import StateMetrics, dead_letter_counter

__all__ = ["RECONCILE_LOCK", "app_from_env", "create_app", "wire"]

log = logging.getLogger("reference_app.worker")

RECONCILE_LOCK = 7_420_002
"""The advisory lock one reconciling worker holds (``pg_try_advisory_xact_lock``)."""

WATCH_BATCH = 2000
"""Journal rows one run of the stock watch announces, at most."""

STATE_INTERVAL = 5.0
"""Seconds between two readings of the state gauges (holds, outbox, payments: `StateMetrics`)."""


async def _reconcile(
    infra: Infra,
    reservations: DurableReservations,
    orders: OrderBook,
    repairs: Counter,
    disagreements: Gauge,
) -> None:
    async with infra.sessions() as session, session.begin():
        if infra.engine.dialect.name == "postgresql":
            locked = await session.scalar(
                text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": RECONCILE_LOCK}
            )
            if not locked:
                return  # another worker reconciles right now
        report = await reservations.reconcile()
        audit = await orders.audit()  # after the journal is proven against the ledger
    changed = {f.name: len(getattr(report, f.name)) for f in fields(report)}
    changed = {name: count for name, count in changed.items() if count}
    if changed:
        log.warning("reconciled Redis with the ledger", extra={"repairs": changed})
        repairs.inc(sum(changed.values()))
    found = {
        "stock_drift": len(audit.stock_drift),
        "line_errors": len(audit.line_errors),
        "over_refunded": len(audit.over_refunded),
    }
    disagreements.set(sum(found.values()))
    if not audit.clean:
        log.error("the orders disagree with the stock journal or payments", extra=found)


@asynccontextmanager
async def wire(app: FastAPI, settings: WorkerSettings, infra: Infra) -> AsyncIterator[None]:
    """Start the sweeper, the relay, reconciliation and the payment re-drive; stop them on exit."""
    registry = app.state.metrics_registry
    expired = Counter(
        "refapp_worker_expired_reservations",
        "Holds the expiry sweeper expired (their stock went back).",
        registry=registry,
    )
    state = StateMetrics.register(registry)
    repairs = Counter(
        "refapp_worker_reconcile_repairs",
        "Differences between Redis and the ledger that reconciliation repaired.",
        registry=registry,
    )
    disagreements = Gauge(
        "refapp_worker_order_audit_problems",
        "SKUs, order lines and orders where the last audit found the orders disagreeing with "
        "the stock journal or their payments (0: none; nothing is repaired).",
        registry=registry,
    )
    redriven = Counter(
        "refapp_worker_payments_redriven",
        "Payments left without an outcome whose outcome event was sent again.",
        registry=registry,
    )
    reservations = reservations_of(settings, infra, plugins=PluginManager())
    await reservations.start()
    outbox = Outbox()
    # Audits the orders only: it reads every refund of their payments, and makes none.
    orders = OrderBook(
        infra.engine, stock=reservations, refunds=RefundService(infra.sessions, None)
    )
    watch = StockWatch(infra.engine, outbox, source="worker")

    def on_expired(reservation: Reservation) -> None:
        expired.inc()
        log.info("reservation expired", extra={"reservation_id": reservation.id})

    async def read_state() -> None:
        async with infra.sessions() as session:
            await state.observe(session)
        state.dead_letters.set(await count_dead_letters())

    async def reconcile() -> None:
        await _reconcile(infra, reservations, orders, repairs, disagreements)

    async def redrive() -> None:
        again = await redrive_payments(
            infra.sessions,
            older_than=settings.payment_redrive_after_seconds,
            outbox=outbox,
            source="worker",
        )
        redriven.inc(len(again))

    async def announce_stock() -> None:
        while await watch.run_once(limit=WATCH_BATCH) == WATCH_BATCH:
            pass  # more rows are waiting

    interval = settings.sweep_interval_seconds
    async with AsyncExitStack() as jobs:
        count_dead_letters = await jobs.enter_async_context(dead_letter_counter(settings, infra))
        with acting_as("sweeper"):  # its task keeps the actor its journal rows name
            await jobs.enter_async_context(
                ExpirySweeper(reservations, interval=interval, on_expired=on_expired)
            )
        await jobs.enter_async_context(
            OutboxRelay(infra.sessions, infra.bus, poll_interval=settings.outbox_poll_seconds)
        )
        await jobs.enter_async_context(
            every(settings.reconcile_interval_seconds, reconcile, name="reconcile")
        )
        await jobs.enter_async_context(every(STATE_INTERVAL, read_state, name="state"))
        await jobs.enter_async_context(
            every(settings.payment_redrive_interval_seconds, redrive, name="payment-redrive")
        )
        await jobs.enter_async_context(
            every(settings.stock_watch_seconds, announce_stock, name="stock-watch")
        )
        yield


def create_app(settings: WorkerSettings) -> FastAPI:
    """The worker, connected to the servers `settings` names."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with connect(settings, client_id="worker", redis=True, kafka=True) as infra:
            app.state.readiness.update(infra.checks)
            async with wire(app, settings, infra):
                log.info("worker ready")
                yield

    return service_app(
        "worker",
        lifespan=lifespan,
        description=(
            "The expiry sweeper, the outbox relay, reconciliation, the payment re-drive and "
            "the stock watch; "
            "no public routes."
        ),
    )


def app_from_env() -> FastAPI:
    """``uvicorn --factory`` entry point: settings from the environment, JSON logs."""
    settings = WorkerSettings()
    configure_logging("worker", settings.log_level)
    app = create_app(settings)
    tune_gc()  # after the imports and the app are made: they are never garbage
    return app
