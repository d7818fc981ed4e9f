"""The email service's wiring on real PostgreSQL, with the in-memory bus standing in for Kafka."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from reference_app.common.db import migrate
from reference_app.common.infra import Infra
from reference_app.common.logs import JsonFormatter
from reference_app.email.main import EmailServices, create_app, make_sender, wire
from reference_app.settings import EmailSettings
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from commercekit.email import ConsoleSender, ResendSender
from commercekit.events import Envelope, InMemoryEventBus
from commercekit.events.catalog import PaymentConfirmed, UserCreated
from commercekit.testing.servers import PostgresServer

SETTINGS = EmailSettings(
    environment="development",
    resend_api_key=None,
    email_from="Shop <shop@example.com>",
    shop_name="Test Shop",
    email_recipient_wait_seconds=0.5,
)


@pytest.fixture
async def engine(postgres_server: PostgresServer) -> AsyncIterator[AsyncEngine]:
    """An engine on a fresh database with commercekit's and the app's migrations."""
    url = postgres_server.create_database(f"email_svc_{uuid.uuid4().hex[:10]}")
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))
    await migrate(engine)
    yield engine
    await engine.dispose()


Replica = tuple[FastAPI, InMemoryEventBus]


@pytest.fixture
async def replicas(engine: AsyncEngine) -> AsyncIterator[Callable[[], Any]]:
    """Start email service replicas (each its own app and bus) on the one database."""
    async with AsyncExitStack() as stack:

        async def start() -> Replica:
            bus = InMemoryEventBus()
            infra = Infra(engine, async_sessionmaker(engine, expire_on_commit=False), event_bus=bus)
            app = create_app(SETTINGS)  # its lifespan (real connections) is not run
            await stack.enter_async_context(wire(app, SETTINGS, infra))
            await bus.start()
            stack.push_async_callback(bus.stop)
            return app, bus

        yield start


def signup(user_id: str) -> Envelope[UserCreated]:
    return Envelope.wrap(
        UserCreated(user_id=user_id, username="grace", email=f"{user_id}@example.com"),
        source="test",
    )


def paid(user_id: str) -> Envelope[PaymentConfirmed]:
    return Envelope.wrap(
        PaymentConfirmed(
            payment_id=f"p-{uuid.uuid4().hex[:8]}",
            reservation_id="r-1",
            user_id=user_id,
            amount=Decimal("19.90"),
            currency="EUR",
        ),
        source="test",
    )


async def drained(bus: InMemoryEventBus) -> None:
    async with asyncio.timeout(20):
        await bus.drain()


def sent(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The ``email sent`` lines, as the JSON the service writes."""
    formatter = JsonFormatter("email")
    return [
        json.loads(formatter.format(r))
        for r in caplog.records
        if r.name == "reference_app.email" and r.getMessage() == "email sent"
    ]


def sent_count(app: FastAPI, template: str) -> float | None:
    registry = app.state.metrics_registry
    return registry.get_sample_value("refapp_email_sent_total", {"template": template})


async def test_welcome_then_payment_mail_once_each_even_when_redelivered(
    replicas: Callable[[], Any],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO, logger="reference_app.email")
    first, second = await replicas(), await replicas()
    user = f"u-{uuid.uuid4().hex[:8]}"
    created, confirmed = signup(user), paid(user)

    await first[1].publish(created)
    await drained(first[1])
    await first[1].publish(confirmed)
    await first[1].publish_many([created, confirmed])  # redelivered to the same replica
    await drained(first[1])
    await second[1].publish_many([created, confirmed])  # and to another one (own sender)
    await drained(second[1])

    lines = sent(caplog)
    assert [(line["template"], line["event_id"]) for line in lines] == [
        ("welcome", created.id),
        ("payment_succeeded", confirmed.id),
    ]
    for line, event in zip(lines, (created, confirmed), strict=True):
        assert line["to"] == f"{user}@example.com"
        assert line["user_id"] == user
        assert line["type"] == event.type
        assert line["logger"] == "reference_app.email"
        assert line["service"] == "email"
    assert sent_count(first[0], "welcome") == 1
    assert sent_count(first[0], "payment_succeeded") == 1
    assert sent_count(second[0], "welcome") is None  # nothing went out from the second
    printed = capsys.readouterr().out  # the console sender prints each mail once
    assert printed.count(f"To: {user}@example.com") == 2
    assert "Subject: Welcome to Test Shop, grace" in printed
    assert "From: Shop <shop@example.com>" in printed
    services: EmailServices = first[0].state.email
    assert (await services.recipients.lookup(user)) is not None


async def test_an_event_for_an_unknown_user_does_not_stop_the_consumer(
    replicas: Callable[[], Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="reference_app.email")
    app, bus = await replicas()
    stranger = f"u-{uuid.uuid4().hex[:8]}"
    orphan = paid(stranger)

    await bus.publish(orphan)
    await drained(bus)  # parked, tried again for 0.5 s, then dead-lettered: the consumer moved on
    letters = bus.dead_letters()
    assert [(d.error, d.group) for d in letters] == [("UnknownRecipient", "email")]
    assert letters[0].reason.startswith("not ready after waiting")
    registry = app.state.metrics_registry
    deferred = registry.get_sample_value(
        "refapp_email_deferred_total", {"type": "payment.confirmed"}
    )
    assert deferred is not None
    assert deferred >= 2  # put off, tried again, put off again...
    failures = registry.get_sample_value(
        "refapp_email_failures_total", {"type": "payment.confirmed", "error": "UnknownRecipient"}
    )
    assert failures is None  # waiting for an address is not a failure
    assert registry.get_sample_value("refapp_email_waiting") == 0
    assert sent(caplog) == []

    later = signup(stranger)
    await bus.publish(later)
    await drained(bus)
    assert [line["template"] for line in sent(caplog)] == ["welcome"]

    # The failed attempts released their claim: a redelivery now sends the mail.
    await bus.publish(orphan)
    await drained(bus)
    assert [(line["template"], line["event_id"]) for line in sent(caplog)] == [
        ("welcome", later.id),
        ("payment_succeeded", orphan.id),
    ]


async def test_the_app_has_only_the_probes() -> None:
    app = create_app(SETTINGS)  # no lifespan: nothing is connected
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://email") as client:
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
        assert (await client.get("/openapi.json")).json()["paths"] == {}
        assert (await client.post("/api/v1/email")).status_code == 404


def test_the_sender_is_resend_only_with_an_api_key() -> None:
    assert isinstance(make_sender(SETTINGS), ConsoleSender)
    keyed = SETTINGS.model_copy(update={"resend_api_key": SecretStr("re_test_key")})
    sender = make_sender(keyed)
    assert isinstance(sender, ResendSender)
    assert sender.settings.sender == "Shop <shop@example.com>"
    assert sender.settings.api_key.get_secret_value() == "re_test_key"
