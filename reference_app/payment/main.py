"""The payment service's app factory, its ``refund.requested`` consumer and refund retries.

```console
$ uvicorn --factory reference_app.payment.main:app_from_env --port 8003
```
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from commercekit.errors import RefundError
from commercekit.events import Envelope, Outbox
from commercekit.payments import (
    PaymentService,
    RefundService,
    RefundStatus,
    SimulatedProcessor,
)
from commercekit.reservations import (
    DurableReservations,
    RedisReservationStore,
    ReservationLedger,
)
from reference_app.common import configure_logging, service_app
from reference_app.common.background import every, track_consumer_lag
from reference_app.common.infra import Infra, connect
from reference_app.common.logs import request_id_var
from reference_app.common.runtime import tune_gc
from reference_app.payment.deps import PaymentMetrics, PaymentServices
from reference_app.payment.routes import router
from reference_app.settings import PaymentSettings

__all__ = [
    "CONSUMER_GROUP",
    "EVENT_SOURCE",
    "app_from_env",
    "complete_refund",
    "create_app",
    "retry_refunds",
    "wire",
]

log = logging.getLogger("reference_app.payment")

EVENT_SOURCE = "payment-service"
CONSUMER_GROUP = "payment"
"""The bus group of the ``refund.requested`` consumer (shared by the replicas)."""


async def complete_refund(services: PaymentServices, event: Envelope[Any]) -> None:
    """Handle ``refund.requested``: make the refund through the processor, once.

    `RefundService.complete` is idempotent (a redelivered event finds the
    refund COMPLETED and changes nothing). A refund the processor refuses
    stays REQUESTED and `retry_refunds` tries it again; an unknown refund
    raises, so the bus retries and then dead-letters the event.
    """
    data = event.data
    token = request_id_var.set(event.correlation_id or event.id)
    try:
        before = await services.refunds.find(data.refund_id)
        if before is not None and before.status is RefundStatus.COMPLETED:
            log.info("refund %s already completed; nothing to do", data.refund_id)
            return
        try:
            refund = await services.refunds.complete(
                data.refund_id, correlation_id=event.correlation_id or event.id
            )
        except RefundError as exc:
            services.metrics.refunds_failed.inc()
            log.warning("refund %s refused (%s); retried later", data.refund_id, exc)
            return
        services.metrics.refunds_completed.labels("event").inc()
        log.info(
            "refund completed",
            extra={
                "refund_id": refund.id,
                "payment_id": refund.payment_id,
                "reservation_id": refund.reservation_id,
            },
        )
    finally:
        request_id_var.reset(token)


async def retry_refunds(services: PaymentServices) -> None:
    """Complete the refunds still REQUESTED (the processor refused them before)."""
    done = await services.refunds.retry_pending()
    if done:
        services.metrics.refunds_completed.labels("retry").inc(len(done))
        log.info("retried refunds completed", extra={"refunds": [r.id for r in done]})


@asynccontextmanager
async def wire(app: FastAPI, settings: PaymentSettings, infra: Infra) -> AsyncIterator[None]:
    """Build the payment service's adapters on `infra` (``app.state.payment``).

    Each charge pins its reservation's hold in ``infra.redis`` for
    ``payment_hold_seconds`` first. Subscribes the ``refund.requested``
    consumer (group ``payment``) on ``infra.bus``, registers the
    ``refapp_payment_*`` metrics, and retries refused refunds every
    ``refund_retry_seconds`` until exit.
    """
    # shared: every replica (and a restarted process) refunds what another charged.
    processor = SimulatedProcessor(success_rate=settings.payment_success_rate, shared=True)
    outbox = Outbox()
    ledger = ReservationLedger(infra.engine)
    # The inventory service's holds, which a charge pins until it is settled.
    holds = DurableReservations(
        RedisReservationStore(
            infra.redis, shards=settings.redis_shards, guarded=True, pipeline=not infra.embedded
        ),
        ledger,
    )
    payments = PaymentService(
        infra.sessions,
        processor,
        outbox=outbox,
        source=EVENT_SOURCE,
        reservations=holds,
        payment_hold=settings.payment_hold_seconds,
    )
    services = PaymentServices(
        settings=settings,
        sessions=infra.sessions,
        processor=processor,
        payments=payments,
        refunds=RefundService(infra.sessions, processor, outbox=outbox, source=EVENT_SOURCE),
        ledger=ledger,
        metrics=PaymentMetrics.register(app.state.metrics_registry),
    )
    app.state.payment = services

    async def on_refund_requested(event: Envelope[Any]) -> None:
        await complete_refund(services, event)

    async def retry() -> None:
        await retry_refunds(services)

    infra.bus.subscribe(CONSUMER_GROUP, on_refund_requested, types=["refund.requested"])
    registry = app.state.metrics_registry
    async with (
        every(settings.refund_retry_seconds, retry, name="payment-refund-retries"),
        track_consumer_lag(registry, infra.bus, CONSUMER_GROUP, service="payment"),
    ):
        yield


def create_app(settings: PaymentSettings) -> FastAPI:
    """The payment service, wired to the PostgreSQL, Redis and Kafka `settings` name."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with connect(settings, client_id="payment-service", redis=True, kafka=True) as infra:
            app.state.readiness.update(infra.checks)
            async with wire(app, settings, infra):
                log.info("payment service ready")
                yield

    app = service_app(
        "payment",
        lifespan=lifespan,
        description="Simulated charges for reservations, payment status, and refunds.",
    )
    app.include_router(router)
    return app


def app_from_env() -> FastAPI:
    """``uvicorn --factory`` entry point: settings from the environment, JSON logs."""
    settings = PaymentSettings()
    configure_logging("payment", settings.log_level)
    app = create_app(settings)
    tune_gc()  # after the imports and the app are made: they are never garbage
    return app
