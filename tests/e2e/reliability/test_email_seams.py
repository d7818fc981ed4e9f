"""The email service at its seams: killed around a send, and events of two topics out of order.

The email service runs as a real process (uvicorn, the reference app's
factory) on a Kafka of its own and the session's PostgreSQL, sending
through Resend, which a local stand-in plays: it records every request,
delivers one mail per ``Idempotency-Key`` as Resend does, and can hold its
answer to a request so that the test kills the service mid-send.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import pytest
from aiokafka.partitioner import DefaultPartitioner
from reference_app.launch import UvicornServer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from commercekit.events import DeadLetter, Envelope, KafkaEventBus, TopicNames
from commercekit.events.catalog import PaymentConfirmed, UserCreated
from commercekit.testing.pytest_plugin import unavailable
from commercekit.testing.servers import KafkaServer, PostgresServer, ServerNotAvailable, free_port
from tests.e2e.reliability.conftest import Tried
from tests.e2e.reliability.faults_helpers import eventually
from tests.integration.events.helpers import read_topic
from tests.unit.email.resend_server import RecordingResendServer, Reply

FACTORY = "reference_app.email.main:app_from_env"
RECIPIENT_WAIT = 12.0
"""``EMAIL_RECIPIENT_WAIT_SECONDS``: how long a payment waits for its user's ``user.created``."""
PARTITIONS = 6
"""Partitions of each topic, as the services create them."""


# ------------------------------------------------------------ the provider
class HoldingResendServer(RecordingResendServer):
    """The Resend stand-in, able to hold its answer to the next request until released.

    ``hold(delivered=False)``: the next request is recorded, no mail is
    delivered, and no answer comes (the request was lost on its way).
    ``hold(delivered=True)``: the mail is delivered, the answer is held
    (the provider sent it; the service never heard back).
    """

    def __init__(self) -> None:
        super().__init__()
        self._holds: deque[bool] = deque()
        self._released = threading.Event()
        self.holding = threading.Event()

    def hold(self, *, delivered: bool) -> None:
        """Hold the answer to the next request."""
        self._released.clear()
        self.holding.clear()
        self._holds.append(delivered)

    def release(self) -> None:
        """Let the held request's thread answer (to nobody, by then)."""
        self._released.set()

    def _handle(self, request: BaseHTTPRequestHandler) -> tuple[Reply, bytes]:
        with self._lock:
            held = self._holds.popleft() if self._holds else None
            if held is False:
                self._replies.appendleft(Reply(503))  # recorded, not delivered
        answer = super()._handle(request)
        if held is not None:
            self.holding.set()
            self._released.wait(60)
        return answer

    def keys(self) -> list[str]:
        """The ``Idempotency-Key`` of every request, in order."""
        return [r.headers.get("idempotency-key", "") for r in self.requests]

    def delivered_tags(self) -> list[str]:
        """The ``template`` tag of every mail delivered (once per key)."""
        return [
            tag["value"]
            for mail in self.delivered
            for tag in mail.get("tags", [])
            if tag["name"] == "template"
        ]

    def delivered_to(self, address: str) -> list[str]:
        """The templates delivered to `address`, in order."""
        return [
            tag["value"]
            for mail in self.delivered
            if address in mail.get("to", [])
            for tag in mail.get("tags", [])
            if tag["name"] == "template"
        ]


# --------------------------------------------------------------- the setup
@dataclass
class Seams:
    """A Kafka of its own, a fresh database, the Resend stand-in, and the email service."""

    workdir: Path
    kafka: KafkaServer
    database_url: str
    engine: AsyncEngine
    resend: HoldingResendServer
    bus: KafkaEventBus
    env: dict[str, str]

    @contextmanager
    def email_service(self) -> Iterator[UvicornServer]:
        """The email service as a process; killed at the end if still running."""
        service = UvicornServer(self.workdir / "email", FACTORY, env=self.env)
        service.start()
        try:
            yield service
        finally:
            service.stop()

    async def recipient(self, user_id: str) -> tuple[str, str] | None:
        """The email service's recipient row for `user_id`: (email, name)."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    text("SELECT email, name FROM commercekit_email_recipients WHERE user_id = :u"),
                    {"u": user_id},
                )
            ).first()
        return (str(row[0]), str(row[1])) if row is not None else None


@dataclass
class Servers:
    """What the module's tests share: Kafka, a database, the Resend stand-in."""

    workdir: Path
    kafka: KafkaServer
    database_url: str
    resend: HoldingResendServer


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer
) -> Iterator[Servers]:
    """A Kafka for this module (the email group must be the only one on its topics)."""
    workdir = tmp_path_factory.mktemp("email-seams")
    kafka = KafkaServer(workdir / "kafka", port=free_port())
    try:
        kafka.start()
    except ServerNotAvailable as exc:
        unavailable(str(exc))
    resend = HoldingResendServer().start()
    url = postgres_server.create_database(f"email_seams_{uuid.uuid4().hex[:10]}")
    try:
        yield Servers(workdir, kafka, url, resend)
    finally:
        resend.stop()
        kafka.stop()


@pytest.fixture
async def seams(servers: Servers) -> AsyncIterator[Seams]:
    """The module's servers, a bus to publish with and an engine to read the tables with."""
    engine = create_async_engine(
        servers.database_url.replace("postgresql://", "postgresql+asyncpg://", 1)
    )
    env = {
        **os.environ,
        "ENVIRONMENT": "production",
        "DATABASE_URL": servers.database_url,
        "KAFKA_BROKER": servers.kafka.bootstrap_servers,
        "LOG_LEVEL": "INFO",
        "RESEND_API_KEY": "re_test_seams",
        "COMMERCEKIT_RESEND_API_URL": servers.resend.url,
        "EMAIL_FROM": "Shop <shop@example.com>",
        "EMAIL_RECIPIENT_WAIT_SECONDS": str(RECIPIENT_WAIT),
    }
    bus = KafkaEventBus(servers.kafka.bootstrap_servers, client_id="email-seams-test")
    try:
        await bus.start()
        yield Seams(
            servers.workdir, servers.kafka, servers.database_url, engine, servers.resend, bus, env
        )
    finally:
        await bus.stop()
        await engine.dispose()


def signup(user_id: str) -> Envelope[UserCreated]:
    return Envelope.wrap(
        UserCreated(user_id=user_id, username=f"n{user_id[-6:]}", email=f"{user_id}@example.com"),
        source="test",
    )


def paid(user_id: str, reservation_id: str | None = None) -> Envelope[PaymentConfirmed]:
    return Envelope.wrap(
        PaymentConfirmed(
            payment_id=f"p-{uuid.uuid4().hex[:8]}",
            reservation_id=reservation_id or f"r-{uuid.uuid4().hex[:8]}",
            user_id=user_id,
            amount=Decimal("19.90"),
            currency="EUR",
        ),
        source="test",
    )


async def held(resend: HoldingResendServer, what: str, within: float = 60) -> None:
    """Wait until the stand-in holds a request."""

    async def holding() -> bool:
        return resend.holding.is_set()

    await eventually(holding, what, within=within, every=0.05)


# ------------------------------------------------------------------ item 2
async def test_the_email_service_killed_before_and_after_a_send_loses_no_mail(
    seams: Seams, tried: Tried
) -> None:
    resend = seams.resend
    user = f"u-{uuid.uuid4().hex[:10]}"
    address = f"{user}@example.com"
    created, confirmed = signup(user), paid(user)
    welcome_key = f"welcome/{created.id}"

    # 1. Killed after the event was picked up and before the mail reached the provider.
    resend.hold(delivered=False)
    with seams.email_service() as service:
        await seams.bus.publish(created)
        await held(resend, "the welcome mail's request")
        service.kill()
    resend.release()
    assert resend.delivered_to(address) == []

    # 2. Killed after the provider sent the mail and before the service recorded it.
    resend.hold(delivered=True)
    with seams.email_service() as service:
        await held(resend, "the welcome mail sent again after the restart")
        service.kill()
    resend.release()
    assert resend.delivered_to(address) == ["welcome"]

    # 3. Restarted once more: the mail is sent a third time, with the same key, and the
    #    provider makes one mail of the three; later mails of the user find the address.
    with seams.email_service():

        async def recorded() -> bool:
            return resend.keys().count(welcome_key) >= 3

        await eventually(recorded, "the welcome mail's third request")
        await seams.bus.publish(confirmed)

        async def payment_mailed() -> bool:
            return resend.delivered_to(address) == ["welcome", "payment_succeeded"]

        await eventually(payment_mailed, "the payment mail")
        await asyncio.sleep(1.0)  # a fourth request would show up now

    assert resend.keys().count(welcome_key) == 3  # one per delivery, each with the event's key
    assert resend.keys().count(f"payment_succeeded/{confirmed.id}") == 1
    assert resend.delivered_to(address) == ["welcome", "payment_succeeded"]
    assert await seams.recipient(user) == (address, f"n{user[-6:]}")
    tried(
        "fault survived",
        "email service killed with SIGKILL before a send reached the provider, then after the "
        "provider sent it: each restart sent the mail again with the same idempotency key, "
        "one welcome mail delivered, the recipient kept, the user's next mail sent",
    )


# ------------------------------------------------------------------ item 3
def partition_of(key: str) -> int:
    """The partition of the payments topic that the producer picks for `key`."""
    partitions = list(range(PARTITIONS))
    return int(DefaultPartitioner()(key.encode(), partitions, partitions))


def reservation_on(*, not_on: int | None = None, on: int | None = None) -> str:
    """A reservation id (the payments topic's key) that lands on (or off) a partition."""
    while True:
        rid = f"r-{uuid.uuid4().hex[:8]}"
        partition = partition_of(rid)
        if (on is None or partition == on) and partition != not_on:
            return rid


async def metric(service: UvicornServer, sample: str) -> float:
    """One sample of the service's /metrics (0 when absent: a labelled counter not counted yet)."""
    async with httpx.AsyncClient(timeout=5) as http:
        text_ = (await http.get(service.url + "/metrics")).text
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text_, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_a_payment_before_its_users_signup_waits_without_blocking_other_partitions(
    seams: Seams, tried: Tried
) -> None:
    resend = seams.resend
    known, newcomer, stranger = (f"u-{uuid.uuid4().hex[:10]}" for _ in range(3))
    early = paid(newcomer, reservation_on())
    waiting = partition_of(early.data.reservation_id)
    other = paid(known, reservation_on(not_on=waiting))
    lost = paid(stranger)

    with seams.email_service() as service:

        async def mailed(user: str, *templates: str) -> bool:
            return resend.delivered_to(f"{user}@example.com") == list(templates)

        await seams.bus.publish(signup(known))
        await eventually(lambda: mailed(known, "welcome"), "the known user's welcome mail")

        # The newcomer's payment comes before the newcomer's signup: it waits, parked.
        await seams.bus.publish(early)

        async def parked() -> bool:
            return await metric(service, "refapp_email_waiting") == 1

        await eventually(parked, "the early payment to be parked", every=0.1)
        # Meanwhile another partition of the same topic flows.
        started = time.monotonic()
        await seams.bus.publish(other)
        await eventually(
            lambda: mailed(known, "welcome", "payment_succeeded"),
            "the other partition's payment mail while one partition waits",
            every=0.05,
        )
        assert time.monotonic() - started < RECIPIENT_WAIT / 2
        assert await mailed(newcomer)  # nothing yet
        assert await metric(service, "refapp_email_waiting") == 1

        # The signup arrives (another topic): the parked payment is mailed after the welcome.
        await seams.bus.publish(signup(newcomer))
        await eventually(
            lambda: mailed(newcomer, "welcome", "payment_succeeded"), "the newcomer's mails"
        )
        deferred = await metric(service, 'refapp_email_deferred_total{type="payment.confirmed"}')
        assert deferred >= 1

        # A payment whose user never signs up waits for the bound, then is dead-lettered.
        given_up_at = time.monotonic()
        await seams.bus.publish(lost)
        [(key, value, headers)] = await read_topic(
            seams.kafka.bootstrap_servers,
            TopicNames().dead_letter_topic,
            expected=1,
            within=RECIPIENT_WAIT + 30,
        )
        waited = time.monotonic() - given_up_at
        letter = DeadLetter.from_record(value, key, headers)
        assert letter.error == "UnknownRecipient"
        assert letter.group == "email"
        assert letter.reason.startswith("not ready after waiting")
        assert f"no address for user {stranger}" in letter.reason
        assert RECIPIENT_WAIT - 1 <= waited <= RECIPIENT_WAIT + 30
        assert await mailed(stranger)

        async def none_waiting() -> bool:
            return await metric(service, "refapp_email_waiting") == 0

        await eventually(none_waiting, "the waiting gauge back at 0")
        assert (
            await metric(service, 'refapp_email_deferred_total{type="payment.confirmed"}')
            > deferred
        )

    assert resend.keys().count(f"payment_succeeded/{early.id}") == 1
    tried(
        "fault survived",
        "a payment event before its user's user.created (another topic): parked, "
        f"its partition waiting while another partition's mail went out, mailed once the "
        f"signup came; a payment of a user who never signed up dead-lettered after the "
        f"{RECIPIENT_WAIT:g} s bound, saying why; refapp_email_waiting and "
        "refapp_email_deferred_total moved",
    )
