"""The email service's app factory: no public routes, only the event consumer and the probes.

```console
$ uvicorn --factory reference_app.email.main:app_from_env --port 8004
```

`EmailNotifier` consumes ``user.created``, ``payment.confirmed``,
``payment.failed``, ``refund.completed``, ``order.fulfilled`` and
``order.cancelled`` (consumer group ``email``) and sends the welcome,
payment succeeded, payment failed, refund issued, order shipped and order
cancelled mails: through Resend when ``RESEND_API_KEY`` is set, else printed on
standard output. Every mail sent is also one JSON log line (logger
``reference_app.email``, message ``email sent``) naming the template, the
recipient, the event and the user.

A payment or refund event of a user whose ``user.created`` has not arrived
yet waits for it, its partition parked while the others go on, for
``EMAIL_RECIPIENT_WAIT_SECONDS`` at most, then goes to the dead-letter
topic. ``refapp_email_waiting`` is how many events wait right now, and
``refapp_email_deferred_total`` counts the deliveries put off this way.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Gauge

from commercekit.email import (
    EMAIL_EVENT_TYPES,
    ConsoleSender,
    EmailMessage,
    EmailNotifier,
    EmailSender,
    Mailer,
    ResendSender,
    ResendSettings,
    SqlRecipients,
)
from commercekit.errors import NotReadyYet
from commercekit.events import Envelope, EventBus, Handler, ProcessedEventStore, SqlClaims
from reference_app.common import configure_logging, service_app
from reference_app.common.background import track_consumer_lag
from reference_app.common.infra import Infra, connect
from reference_app.common.runtime import tune_gc
from reference_app.settings import EmailSettings

__all__ = [
    "EmailMetrics",
    "EmailServices",
    "LoggedSender",
    "app_from_env",
    "create_app",
    "make_sender",
    "wire",
]

log = logging.getLogger("reference_app.email")

GROUP = "email"
"""The consumer group of the email service (every replica joins it)."""

_current_event: contextvars.ContextVar[Envelope[Any] | None] = contextvars.ContextVar(
    "reference_app_email_event", default=None
)
"""The event being handled, so the sender's log line can name it."""


@dataclass(frozen=True, slots=True)
class EmailMetrics:
    """The service's Prometheus counters (``refapp_email_*``).

    Attributes:
        sent: mails handed to the provider, by template.
        failures: failed attempts at handling an event, by event type and error
            (each bus retry counts; the last one dead-letters the event).
        deferred: deliveries of an event put off because its user's address
            is not known yet, by event type (each try counts).
        waiting: events parked right now until their user's address is known.
    """

    sent: Counter
    failures: Counter
    deferred: Counter
    waiting: Gauge

    @classmethod
    def register(cls, registry: CollectorRegistry) -> EmailMetrics:
        """Create the counters on `registry`."""
        return cls(
            sent=Counter(
                "refapp_email_sent",
                "Mails sent, by template.",
                ["template"],
                registry=registry,
            ),
            failures=Counter(
                "refapp_email_failures",
                "Failed attempts at handling an event, by event type and error.",
                ["type", "error"],
                registry=registry,
            ),
            deferred=Counter(
                "refapp_email_deferred",
                "Deliveries put off until the user's address is known, by event type.",
                ["type"],
                registry=registry,
            ),
            waiting=Gauge(
                "refapp_email_waiting",
                "Events parked until their user's address is known (their partition waits).",
                registry=registry,
            ),
        )


class LoggedSender:
    """An `EmailSender` that logs (and counts) every mail the wrapped sender took.

    The log line (message ``email sent``) has the fields ``template``, ``to``,
    ``subject``, ``message_id``, and, when the mail was caused by an event,
    ``event_id``, ``type`` (the event type) and ``user_id``.

    Args:
        sender: the sender doing the work.
        metrics: where mails sent are counted.
    """

    def __init__(self, sender: EmailSender, metrics: EmailMetrics) -> None:
        self.sender = sender
        self.metrics = metrics

    async def send(self, message: EmailMessage, *, idempotency_key: str | None = None) -> str:
        """Send `message` through the wrapped sender, then log it; the provider's id."""
        message_id = await self.sender.send(message, idempotency_key=idempotency_key)
        template = message.tags.get("template", "")
        event = _current_event.get()
        fields: dict[str, Any] = {
            "template": template,
            "to": ", ".join(message.to),
            "subject": message.subject,
            "message_id": message_id,
            "idempotency_key": idempotency_key,
        }
        if event is not None:
            fields.update(
                event_id=event.id,
                type=event.type,
                user_id=getattr(event.data, "user_id", None),
            )
        self.metrics.sent.labels(template).inc()
        log.info("email sent", extra=fields)
        return message_id


@dataclass(frozen=True, slots=True)
class EmailServices:
    """What the email service runs on (``app.state.email``)."""

    settings: EmailSettings
    sender: LoggedSender
    mailer: Mailer
    recipients: SqlRecipients
    processed: ProcessedEventStore
    notifier: EmailNotifier
    metrics: EmailMetrics


def make_sender(settings: EmailSettings) -> EmailSender:
    """`ResendSender` when ``RESEND_API_KEY`` is set, else a `ConsoleSender` (standard output)."""
    if settings.resend_api_key is not None:
        return ResendSender(
            ResendSettings(api_key=settings.resend_api_key, sender=settings.email_from)
        )
    return ConsoleSender(sender=settings.email_from)


def _observed(handler: Handler, metrics: EmailMetrics) -> Handler:
    """`handler`, with the event in context for the log line, and its failures counted."""

    async def observed(event: Envelope[Any]) -> None:
        token = _current_event.set(event)
        try:
            await handler(event)
        except NotReadyYet:
            metrics.deferred.labels(event.type).inc()
            raise
        except Exception as exc:
            metrics.failures.labels(event.type, type(exc).__name__).inc()
            raise
        finally:
            _current_event.reset(token)

    return observed


def _waiting(bus: EventBus) -> float:
    """Events of the email group parked on `bus` (0 for a bus that cannot tell)."""
    deferred = getattr(bus, "deferred", None)
    return float(deferred(GROUP)) if deferred is not None else 0.0


@asynccontextmanager
async def wire(app: FastAPI, settings: EmailSettings, infra: Infra) -> AsyncIterator[None]:
    """Build the notifier on `infra` (``app.state.email``) and subscribe it (group ``email``)."""
    metrics = EmailMetrics.register(app.state.metrics_registry)
    sender = LoggedSender(make_sender(settings), metrics)
    mailer = Mailer(sender, sender_address=settings.email_from, shop_name=settings.shop_name)
    recipients = SqlRecipients(infra.engine)
    processed = SqlClaims(infra.sessions)
    notifier = EmailNotifier(
        mailer,
        recipients=recipients,
        processed=processed,
        group=GROUP,
        recipient_wait=settings.email_recipient_wait_seconds,
    )
    bus = infra.bus
    metrics.waiting.set_function(lambda: _waiting(bus))
    infra.bus.subscribe(GROUP, _observed(notifier.handler(), metrics), types=EMAIL_EVENT_TYPES)
    app.state.email = EmailServices(
        settings=settings,
        sender=sender,
        mailer=mailer,
        recipients=recipients,
        processed=processed,
        notifier=notifier,
        metrics=metrics,
    )
    async with track_consumer_lag(app.state.metrics_registry, infra.bus, GROUP, service="email"):
        yield


def create_app(settings: EmailSettings) -> FastAPI:
    """The email service, on the database and Kafka `settings` name."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with connect(settings, client_id="email-service", kafka=True) as infra:
            app.state.readiness.update(infra.checks)
            async with wire(app, settings, infra):
                mode = "resend" if settings.resend_api_key is not None else "console"
                log.info("email service ready", extra={"sender": mode})
                yield

    return service_app(
        "email",
        lifespan=lifespan,
        description="Sends the transactional mails the events call for; no public routes.",
    )


def app_from_env() -> FastAPI:
    """``uvicorn --factory`` entry point: settings from the environment, JSON logs."""
    settings = EmailSettings()
    configure_logging("email", settings.log_level)
    app = create_app(settings)
    tune_gc()  # after the imports and the app are made: they are never garbage
    return app
