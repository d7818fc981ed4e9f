"""The payment service's adapters, built in the lifespan, and their dependency aliases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from commercekit.payments import PaymentService, RefundService, SimulatedProcessor
from commercekit.reservations import ReservationLedger
from reference_app.settings import PaymentSettings

__all__ = [
    "LedgerDep",
    "MetricsDep",
    "PaymentMetrics",
    "PaymentServices",
    "PaymentsDep",
    "RefundsDep",
    "ServicesDep",
    "SettingsDep",
]


@dataclass(frozen=True, slots=True)
class PaymentMetrics:
    """The service's Prometheus counters (``refapp_payment_*``).

    Attributes:
        payments: charges answered, by outcome: ``succeeded``, ``failed``
            (declined), ``replayed`` (an Idempotency-Key seen before),
            ``conflict`` (a key reused with another body), ``unavailable``
            (the processor failed; nothing was charged).
        refunds_completed: refunds the processor made, by trigger (``event``
            for ``refund.requested``, ``retry`` for the periodic retry).
        refunds_failed: attempts the processor refused (the refund stays
            requested and is retried).
    """

    payments: Counter
    refunds_completed: Counter
    refunds_failed: Counter

    @classmethod
    def register(cls, registry: CollectorRegistry) -> PaymentMetrics:
        """Create the counters in `registry` (once per registry), every outcome at 0."""
        metrics = cls(
            payments=Counter(
                "refapp_payment_payments",
                "Payments answered by the payment service, by outcome.",
                ["outcome"],
                registry=registry,
            ),
            refunds_completed=Counter(
                "refapp_payment_refunds_completed",
                "Refunds completed through the processor, by trigger.",
                ["trigger"],
                registry=registry,
            ),
            refunds_failed=Counter(
                "refapp_payment_refunds_failed",
                "Refund attempts the processor refused (retried later).",
                registry=registry,
            ),
        )
        # Series from the start, so a rate over them is 0 before the first event, not absent.
        for outcome in ("succeeded", "failed", "replayed", "conflict", "unavailable"):
            metrics.payments.labels(outcome)
        for trigger in ("event", "retry"):
            metrics.refunds_completed.labels(trigger)
        return metrics


@dataclass(frozen=True, slots=True)
class PaymentServices:
    """Everything the routes and the consumer use; tests may swap any part.

    Attributes:
        settings: the service's settings.
        sessions: database sessions.
        processor: the simulated processor (``shared``: any replica refunds).
        payments: charges, records and announces payments.
        refunds: completes refunds through `processor`.
        ledger: the reservations' durable records (who owns which).
        metrics: the Prometheus counters.
    """

    settings: PaymentSettings
    sessions: async_sessionmaker[AsyncSession]
    processor: SimulatedProcessor
    payments: PaymentService
    refunds: RefundService
    ledger: ReservationLedger
    metrics: PaymentMetrics


async def get_services(request: Request) -> PaymentServices:
    """The services wired by the lifespan."""
    services: PaymentServices = request.app.state.payment
    return services


ServicesDep = Annotated[PaymentServices, Depends(get_services)]


async def get_settings(services: ServicesDep) -> PaymentSettings:
    """The service's settings."""
    return services.settings


async def get_payments(services: ServicesDep) -> PaymentService:
    """The payment service."""
    return services.payments


async def get_refunds(services: ServicesDep) -> RefundService:
    """The refund service."""
    return services.refunds


async def get_ledger(services: ServicesDep) -> ReservationLedger:
    """The reservation ledger."""
    return services.ledger


async def get_metrics(services: ServicesDep) -> PaymentMetrics:
    """The Prometheus counters."""
    return services.metrics


SettingsDep = Annotated[PaymentSettings, Depends(get_settings)]
PaymentsDep = Annotated[PaymentService, Depends(get_payments)]
RefundsDep = Annotated[RefundService, Depends(get_refunds)]
LedgerDep = Annotated[ReservationLedger, Depends(get_ledger)]
MetricsDep = Annotated[PaymentMetrics, Depends(get_metrics)]
