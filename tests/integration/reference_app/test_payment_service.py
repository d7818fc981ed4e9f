"""The payment service on a real PostgreSQL: its routes in-process, its refund consumer.

The route tests wire the service on a hand-built `Infra` (the real engine,
the in-memory bus) and call it through ``httpx.ASGITransport``; the last
test runs `create_app`'s own lifespan against real PostgreSQL and Kafka.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from reference_app.common import service_app
from reference_app.common.db import migrate
from reference_app.common.infra import Infra
from reference_app.payment.deps import PaymentServices
from reference_app.payment.main import create_app, wire
from reference_app.payment.routes import router
from reference_app.settings import PaymentSettings
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from commercekit.events import CATALOG, Envelope, InMemoryEventBus, OutboxRelay
from commercekit.events.kafka import KafkaEventBus
from commercekit.payments import (
    Payment,
    PaymentSettlement,
    RefundService,
    RefundStatus,
    SettlementOutcome,
)
from commercekit.reservations import (
    DurableReservations,
    RedisReservationStore,
    Reservation,
    ReservationLedger,
    ReservationLine,
    ReservationStatus,
)
from commercekit.testing.servers import KafkaServer, PostgresServer, RedisServer

ALICE = {"X-User-Id": "u-alice", "X-User-Role": "user"}
BOB = {"X-User-Id": "u-bob", "X-User-Role": "user"}


# ----------------------------------------------------------------- fixtures
@pytest.fixture
async def engine(postgres_server: PostgresServer) -> AsyncIterator[AsyncEngine]:
    url = postgres_server.create_database(f"payment_{uuid.uuid4().hex[:10]}")
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://"))
    await migrate(engine)
    yield engine
    await engine.dispose()


@dataclass
class Service:
    app: FastAPI
    client: httpx.AsyncClient
    bus: InMemoryEventBus
    infra: Infra

    @property
    def state(self) -> PaymentServices:
        services: PaymentServices = self.app.state.payment
        return services

    async def reserve(self, owner: str = "u-alice", **changes: Any) -> Reservation:
        """A reservation as the inventory service records it in the ledger."""
        now = dt.datetime.now(dt.UTC)
        reservation = Reservation(
            id=str(uuid.uuid4()),
            status=ReservationStatus.PENDING,
            owner=owner,
            lines=(ReservationLine(sku="SKU-1", quantity=2),),
            created_at=now,
            updated_at=now,
            expires_at=now + dt.timedelta(minutes=15),
        ).model_copy(update=changes)
        assert await ReservationLedger(self.infra.engine).record_created(reservation)
        return reservation

    async def pay(
        self,
        reservation_id: str,
        amount: object = "20.00",
        *,
        method: str | None = "tok_success",
        user: dict[str, str] = ALICE,
        key: str | None = None,
    ) -> httpx.Response:
        body: dict[str, object] = {"reservationId": reservation_id, "amount": amount}
        if method is not None:
            body["paymentMethod"] = method
        headers = {**user, **({"Idempotency-Key": key} if key else {})}
        return await self.client.post("/api/v1/payment", json=body, headers=headers)

    async def status(self, reservation_id: str, user: dict[str, str] = ALICE) -> httpx.Response:
        return await self.client.get(f"/api/v1/payment/{reservation_id}", headers=user)

    async def outbox(self) -> list[Envelope[Any]]:
        async with self.infra.sessions() as session:
            rows = await session.scalars(text("SELECT body FROM commercekit_outbox ORDER BY id"))
            return [CATALOG.decode(body) for body in rows]

    async def metric(self, line: str) -> float:
        exposition = (await self.client.get("/metrics")).text
        for row in exposition.splitlines():
            if row.startswith(line + " "):
                return float(row.rsplit(" ", 1)[1])
        return 0.0


@asynccontextmanager
async def _never(_: FastAPI) -> AsyncIterator[None]:  # the test enters `wire` itself
    yield


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_server.url)
    yield client
    await client.aclose()


@asynccontextmanager
async def running(
    engine: AsyncEngine, redis_client: aioredis.Redis, **settings: Any
) -> AsyncIterator[Service]:
    bus = InMemoryEventBus()
    infra = Infra(
        engine,
        async_sessionmaker(engine, expire_on_commit=False),
        event_bus=bus,
        redis_client=redis_client,
    )
    values = {"environment": "development", "currency": "USD", "refund_retry_seconds": 3600}
    config = PaymentSettings(**{**values, **settings})
    app = service_app("payment", lifespan=_never)
    app.include_router(router)
    transport = httpx.ASGITransport(app=app)
    async with (
        bus,
        wire(app, config, infra),
        httpx.AsyncClient(transport=transport, base_url="http://payment") as client,
    ):
        service = Service(app, client, bus, infra)
        # The holds a charge pins, in a namespace of this test's own on the shared Redis
        # (the `reservations` fixture swaps in the inventory side's store).
        holds = RedisReservationStore(
            redis_client, prefix=f"pay{uuid.uuid4().hex[:8]}", guarded=True
        )
        service.state.payments.reservations = DurableReservations(holds, ReservationLedger(engine))
        await service.state.payments.reservations.start()
        yield service


@pytest.fixture
async def service(engine: AsyncEngine, redis_client: aioredis.Redis) -> AsyncIterator[Service]:
    async with running(engine, redis_client) as running_service:
        yield running_service


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"]
    if code is not None:
        assert error["code"] == code


# ------------------------------------------------------------------ paying
async def test_a_payment_is_accepted_and_shows_as_processing(service: Service) -> None:
    reservation = await service.reserve()
    response = await service.client.post(
        "/api/v1/payment",
        json={"reservationId": reservation.id, "amount": 20, "paymentMethod": "tok_success"},
        headers={**ALICE, "X-Request-Id": "req-pay-1"},
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "processing"
    assert body["message"]
    assert body["reservationId"] == reservation.id
    [event] = await service.outbox()
    assert (event.type, event.correlation_id) == ("payment.confirmed", "req-pay-1")
    assert (event.data.payment_id, event.data.user_id) == (body["paymentId"], "u-alice")
    assert (event.data.amount, event.data.currency) == (Decimal("20.00"), "USD")

    shown = await service.status(reservation.id)
    assert shown.status_code == 200, shown.text
    assert shown.json() == {
        "reservationId": reservation.id,
        "paymentId": body["paymentId"],
        "status": "processing",
        "amount": "20.00",
        "currency": "USD",
        "failureReason": None,
        "refunds": [],
    }
    assert await service.metric('refapp_payment_payments_total{outcome="succeeded"}') == 1


async def test_a_declined_payment_shows_as_failed(service: Service) -> None:
    reservation = await service.reserve()
    response = await service.pay(reservation.id, "12.5", method="tok_declined")
    assert response.status_code == 202, response.text
    [event] = await service.outbox()
    assert event.type == "payment.failed"
    shown = (await service.status(reservation.id)).json()
    assert (shown["status"], shown["amount"], shown["paymentId"]) == (
        "failed",
        "12.50",
        response.json()["paymentId"],
    )
    assert shown["failureReason"] == "the card was declined"
    assert await service.metric('refapp_payment_payments_total{outcome="failed"}') == 1


async def test_without_a_method_the_success_rate_decides(
    engine: AsyncEngine, redis_client: aioredis.Redis
) -> None:
    async with running(engine, redis_client, payment_success_rate=0.0) as service:
        reservation = await service.reserve()
        assert (await service.pay(reservation.id, method=None)).status_code == 202
        assert (await service.status(reservation.id)).json()["status"] == "failed"
        assert service.state.processor.payments[0].status.value == "FAILED"


async def test_the_latest_of_several_payments_is_reported(service: Service) -> None:
    reservation = await service.reserve()
    await service.pay(reservation.id, method="tok_declined")
    second = (await service.pay(reservation.id)).json()
    shown = (await service.status(reservation.id)).json()
    assert (shown["paymentId"], shown["status"]) == (second["paymentId"], "processing")


async def test_a_processor_error_is_a_503_and_charges_nothing(service: Service) -> None:
    reservation = await service.reserve()
    response = await service.pay(reservation.id, method="tok_error", key="k-err")
    assert_error(response, 503)
    assert await service.outbox() == []
    # nothing was recorded under the key: a retry with it goes through
    assert (await service.pay(reservation.id, key="k-err")).status_code == 202


# ------------------------------------------------------------- idempotency
async def test_a_replay_with_the_key_is_answered_without_a_second_charge(
    service: Service,
) -> None:
    reservation = await service.reserve()
    first = await service.pay(reservation.id, "20.00", key="order-1")
    again = await service.pay(reservation.id, 20, key="order-1")  # the same amount, as a number
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert len(service.state.processor.payments) == 1
    assert [e.type for e in await service.outbox()] == ["payment.confirmed"]
    assert await service.metric('refapp_payment_payments_total{outcome="replayed"}') == 1


async def test_the_key_with_another_body_is_a_409_and_no_charge(service: Service) -> None:
    reservation = await service.reserve()
    first = await service.pay(reservation.id, "20.00", key="order-1")
    conflict = await service.pay(reservation.id, "21.00", key="order-1")
    assert_error(conflict, 409, "idempotency_conflict")
    other_method = await service.pay(reservation.id, "20.00", method="tok_declined", key="order-1")
    assert_error(other_method, 409, "idempotency_conflict")
    assert len(service.state.processor.payments) == 1
    shown = (await service.status(reservation.id)).json()
    assert (shown["paymentId"], shown["status"]) == (first.json()["paymentId"], "processing")


async def test_keys_are_per_user(service: Service) -> None:
    mine, theirs = await service.reserve(), await service.reserve(owner="u-bob")
    one = await service.pay(mine.id, key="same-key")
    two = await service.pay(theirs.id, key="same-key", user=BOB)
    assert one.status_code == two.status_code == 202
    assert one.json()["paymentId"] != two.json()["paymentId"]


# ------------------------------------------------------------------ access
async def test_unknown_and_foreign_reservations_are_the_same_404(service: Service) -> None:
    bobs = await service.reserve(owner="u-bob")
    await service.pay(bobs.id, user=BOB)
    foreign = await service.pay(bobs.id)
    unknown = await service.pay(str(uuid.uuid4()))
    assert_error(foreign, 404, "reservation_not_found")
    assert foreign.json() == unknown.json()
    assert len(service.state.processor.payments) == 1  # Bob's own only

    foreign_read = await service.status(bobs.id)
    unknown_read = await service.status(str(uuid.uuid4()))
    assert_error(foreign_read, 404, "reservation_not_found")
    assert foreign_read.json() == unknown_read.json()
    assert (await service.status(bobs.id, user=BOB)).status_code == 200


async def test_a_reservation_without_payment_is_a_404_for_its_owner(service: Service) -> None:
    reservation = await service.reserve()
    assert_error(await service.status(reservation.id), 404, "payment_not_found")


async def test_without_the_gateways_identity_it_is_a_401(service: Service) -> None:
    reservation = await service.reserve()
    response = await service.client.post(
        "/api/v1/payment", json={"reservationId": reservation.id, "amount": "1.00"}
    )
    assert_error(response, 401)
    assert_error(await service.client.get(f"/api/v1/payment/{reservation.id}"), 401)


# --------------------------------------------------------------- bad input
BAD_BODIES: dict[str, object] = {
    "negative": {"amount": "-1.00"},
    "zero": {"amount": 0},
    "zero string": {"amount": "0.00"},
    "huge": {"amount": "10000000.00"},
    "huge number": {"amount": 1e300},
    "three decimals": {"amount": "1.001"},
    "three decimals number": {"amount": 1.001},
    "not a number": {"amount": "abc"},
    "nan": {"amount": "NaN"},
    "infinity": {"amount": "Infinity"},
    "boolean amount": {"amount": True},
    "null amount": {"amount": None},
    "list amount": {"amount": [1]},
    "object amount": {"amount": {"value": 1}},
    "numeric reservation id": {"reservationId": 123},
    "empty reservation id": {"reservationId": ""},
    "long reservation id": {"reservationId": "r" * 65},
    "reservation id with spaces": {"reservationId": "a b"},
    "numeric method": {"paymentMethod": 5},
    "odd method": {"paymentMethod": "tok success"},
    "extra field": {"currency": "EUR"},
    "missing amount": {"amount": ...},
    "missing reservation id": {"reservationId": ...},
}


@pytest.mark.parametrize("changes", BAD_BODIES.values(), ids=BAD_BODIES.keys())
async def test_a_bad_body_is_a_422_json_error(service: Service, changes: dict[str, Any]) -> None:
    reservation = await service.reserve()
    body = {"reservationId": reservation.id, "amount": "20.00", **changes}
    body = {name: value for name, value in body.items() if value is not ...}
    response = await service.client.post("/api/v1/payment", json=body, headers=ALICE)
    assert_error(response, 422, "validation_error")
    assert service.state.processor.charge_calls == 0


@pytest.mark.parametrize(
    ("content", "status"),
    [("{not json", 400), ("[]", 422), ('"20.00"', 422), ("", 422)],
    ids=["malformed", "array", "string", "empty"],
)
async def test_a_body_that_is_not_an_object_is_a_4xx(
    service: Service, content: str, status: int
) -> None:
    response = await service.client.post(
        "/api/v1/payment",
        content=content,
        headers={**ALICE, "Content-Type": "application/json"},
    )
    assert_error(response, status)
    assert service.state.processor.charge_calls == 0


async def test_a_bad_idempotency_key_or_path_is_a_422(service: Service) -> None:
    reservation = await service.reserve()
    assert_error(await service.pay(reservation.id, key="k" * 201), 422, "validation_error")
    assert_error(await service.status("bad id!"), 422, "validation_error")
    assert service.state.processor.charge_calls == 0


# ----------------------------------------------------------------- refunds
async def payment_of(service: Service, reservation_id: str) -> Payment:
    [payment] = await service.state.payments.for_reservation(reservation_id)
    return payment


async def test_a_refund_delivered_twice_is_completed_once(service: Service) -> None:
    reservation = await service.reserve()
    assert (await service.pay(reservation.id, "20.00")).status_code == 202
    payment = await payment_of(service, reservation.id)
    recorder = RefundService(service.infra.sessions, None)  # the inventory side's: no processor
    async with service.infra.sessions() as session, session.begin():
        refund, created = await recorder.request(session, payment, correlation_id="req-refund")
    assert created
    assert (await service.status(reservation.id)).json()["refunds"][0]["status"] == "requested"

    relay = OutboxRelay(service.infra.sessions, service.bus)
    assert await relay.relay_once() == 2  # payment.confirmed, refund.requested
    [requested] = [e for e in await service.outbox() if e.type == "refund.requested"]
    await service.bus.publish(requested)  # a redelivery
    async with asyncio.timeout(10):
        await service.bus.drain()

    processor = service.state.processor
    assert processor.refund_calls == 1
    assert processor.refunded(payment.id) == Decimal("20.00")
    completed = [e for e in await service.outbox() if e.type == "refund.completed"]
    assert [(e.data.refund_id, e.correlation_id) for e in completed] == [(refund.id, "req-refund")]
    assert (await recorder.get(payment.id)).status is RefundStatus.COMPLETED  # type: ignore[union-attr]
    shown = (await service.status(reservation.id)).json()
    assert shown["status"] == "refunded"
    assert shown["refunds"] == [
        {
            "id": refund.id,
            "paymentId": payment.id,
            "amount": "20.00",
            "currency": "USD",
            "reason": "MANUAL",
            "description": "refund requested",
            "status": "completed",
        }
    ]
    trigger = 'refapp_payment_refunds_completed_total{trigger="event"}'
    assert await service.metric(trigger) == 1


async def test_each_refund_of_a_payment_is_completed_by_its_own_event(service: Service) -> None:
    reservation = await service.reserve()
    assert (await service.pay(reservation.id, "20.00")).status_code == 202
    payment = await payment_of(service, reservation.id)
    recorder = RefundService(service.infra.sessions, None)
    async with service.infra.sessions() as session, session.begin():
        await recorder.request(session, payment, amount=Decimal("5.00"))  # the settlement's
    relay = OutboxRelay(service.infra.sessions, service.bus)
    await relay.relay_once()
    async with asyncio.timeout(10):
        await service.bus.drain()
    async with service.infra.sessions() as session, session.begin():
        later, _ = await recorder.request(
            session, payment, amount=Decimal("15.00"), key="cancel:ticket-1"
        )
    await relay.relay_once()
    async with asyncio.timeout(10):
        await service.bus.drain()
    # The payment's first refund being done says nothing of its second.
    assert (await recorder.find(later.id)).status is RefundStatus.COMPLETED  # type: ignore[union-attr]
    assert service.state.processor.refunded(payment.id) == Decimal("20.00")
    assert (await service.status(reservation.id)).json()["status"] == "refunded"


async def refund_completed(client: httpx.AsyncClient, reservation_id: str) -> bool:
    shown = (await client.get(f"/api/v1/payment/{reservation_id}", headers=ALICE)).json()
    return [r["status"] for r in shown["refunds"]] == ["completed"]


async def test_refunds_left_requested_are_completed_by_the_retry(
    engine: AsyncEngine, redis_client: aioredis.Redis
) -> None:
    async with running(engine, redis_client, refund_retry_seconds=0.05) as service:
        reservation = await service.reserve()
        await service.pay(reservation.id)
        payment = await payment_of(service, reservation.id)
        # recorded, but its refund.requested event never reaches the consumer
        await RefundService(service.infra.sessions, None).refund(payment)
        async with asyncio.timeout(10):
            while not await refund_completed(service.client, reservation.id):  # noqa: ASYNC110 - polling the service
                await asyncio.sleep(0.05)
        assert service.state.processor.refund_calls == 1
        trigger = 'refapp_payment_refunds_completed_total{trigger="retry"}'
        assert await service.metric(trigger) == 1


# ------------------------------------------- with the inventory's settlement
@pytest.fixture
async def reservations(
    engine: AsyncEngine, redis_client: aioredis.Redis, service: Service
) -> DurableReservations:
    """The inventory side's holds; the payment service pins these."""
    store = RedisReservationStore(redis_client, prefix=f"pay{uuid.uuid4().hex[:8]}", guarded=True)
    durable = DurableReservations(store, ReservationLedger(engine))
    await durable.start()
    await durable.set_stock("SKU-1", 10)
    service.state.payments.reservations = durable
    return durable


async def settle_all(service: Service, reservations: DurableReservations) -> list[str]:
    """What the inventory service does with the payment events in the outbox."""
    settlement = PaymentSettlement(reservations, RefundService(service.infra.sessions, None))
    outcomes = []
    for event in await service.outbox():
        if event.type.startswith("payment."):
            outcomes.append((await settlement.settle(event)).outcome.value)
    return outcomes


async def test_a_settled_payment_shows_as_confirmed(
    service: Service, reservations: DurableReservations
) -> None:
    reservation = await reservations.reserve([("SKU-1", 2)], ttl=60, owner="u-alice")
    assert (await service.pay(reservation.id)).status_code == 202
    assert await settle_all(service, reservations) == [SettlementOutcome.CONFIRMED.value]
    shown = (await service.status(reservation.id)).json()
    assert (shown["status"], shown["refunds"]) == ("confirmed", [])


async def test_a_late_payment_is_charged_then_refunded(
    service: Service, reservations: DurableReservations
) -> None:
    reservation = await reservations.reserve([("SKU-1", 2)], ttl=0.05, owner="u-alice")
    await asyncio.sleep(0.15)  # the hold expires before the payment arrives
    assert (await service.pay(reservation.id)).status_code == 202
    assert len(service.state.processor.payments) == 1  # charged all the same
    assert await settle_all(service, reservations) == [SettlementOutcome.REFUNDED.value]
    shown = (await service.status(reservation.id)).json()
    assert shown["status"] == "refunded"
    assert [(r["reason"], r["status"]) for r in shown["refunds"]] == [("LATE_PAYMENT", "requested")]
    await OutboxRelay(service.infra.sessions, service.bus).relay_once()
    async with asyncio.timeout(10):
        await service.bus.drain()
    shown = (await service.status(reservation.id)).json()
    assert [r["status"] for r in shown["refunds"]] == ["completed"]
    assert service.state.processor.refund_calls == 1


async def test_a_payment_accepted_before_the_deadline_is_confirmed_however_late_settled(
    service: Service, reservations: DurableReservations
) -> None:
    reservation = await reservations.reserve([("SKU-1", 2)], ttl=2.0, owner="u-alice")
    # Shortly before the deadline; room enough for a loaded machine to answer in time.
    wait = (reservation.expires_at - dt.datetime.now(dt.UTC)).total_seconds() - 0.6
    await asyncio.sleep(max(0.0, wait))
    assert (await service.pay(reservation.id)).status_code == 202
    assert dt.datetime.now(dt.UTC) < reservation.expires_at  # answered before expiresAt
    # The event is late (a Kafka outage): settled after the deadline; the sweeper runs.
    await asyncio.sleep((reservation.expires_at - dt.datetime.now(dt.UTC)).total_seconds() + 1.0)
    assert await reservations.expire_due() == []
    assert await settle_all(service, reservations) == [SettlementOutcome.CONFIRMED.value]
    shown = (await service.status(reservation.id)).json()
    assert (shown["status"], shown["refunds"]) == ("confirmed", [])
    assert (await reservations.get(reservation.id)).status is ReservationStatus.CONFIRMED


async def test_a_payment_is_a_503_and_charges_nothing_when_holds_cannot_be_pinned(
    service: Service, reservations: DurableReservations
) -> None:
    reservation = await reservations.reserve([("SKU-1", 2)], ttl=60, owner="u-alice")
    down = aioredis.Redis(port=1, socket_connect_timeout=0.5)  # nothing listens there
    service.state.payments.reservations = DurableReservations(
        RedisReservationStore(down, guarded=True), ReservationLedger(service.infra.engine)
    )
    try:
        assert_error(await service.pay(reservation.id, key="k-down"), 503)
    finally:
        await down.aclose()
    assert service.state.processor.charge_calls == 0
    assert await service.outbox() == []


async def test_a_paid_order_reads_as_paid_after_a_declined_retry(
    service: Service, reservations: DurableReservations
) -> None:
    reservation = await reservations.reserve([("SKU-1", 2)], ttl=60, owner="u-alice")
    paid = (await service.pay(reservation.id)).json()
    assert await settle_all(service, reservations) == [SettlementOutcome.CONFIRMED.value]
    assert (await service.pay(reservation.id, method="tok_declined")).status_code == 202
    shown = (await service.status(reservation.id)).json()
    assert (shown["paymentId"], shown["status"]) == (paid["paymentId"], "confirmed")
    assert shown["failureReason"] is None
    settlement = PaymentSettlement(reservations, RefundService(service.infra.sessions, None))
    for event in await service.outbox():  # the decline settles too: it changes nothing
        if event.type == "payment.failed":
            assert (await settlement.settle(event)).outcome is SettlementOutcome.RELEASED
    shown = (await service.status(reservation.id)).json()
    assert (shown["paymentId"], shown["status"], shown["refunds"]) == (
        paid["paymentId"],
        "confirmed",
        [],
    )
    assert (await reservations.get(reservation.id)).status is ReservationStatus.CONFIRMED


async def test_a_payment_being_settled_reads_as_processing_after_a_declined_retry(
    service: Service,
) -> None:
    reservation = await service.reserve()
    paid = (await service.pay(reservation.id)).json()
    await service.pay(reservation.id, method="tok_declined")
    shown = (await service.status(reservation.id)).json()
    assert (shown["paymentId"], shown["status"]) == (paid["paymentId"], "processing")


# ------------------------------------------------------- the real lifespan
async def test_create_app_serves_and_completes_refunds_over_kafka(
    postgres_server: PostgresServer, kafka_server: KafkaServer, redis_server: RedisServer
) -> None:
    url = postgres_server.create_database(f"payment_{uuid.uuid4().hex[:10]}")
    settings = PaymentSettings(
        environment="development",
        database_url=url,
        kafka_broker=kafka_server.bootstrap_servers,
        redis_url=redis_server.url,
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://payment") as client,
    ):
        ready = await client.get("/ready")
        assert ready.status_code == 200, ready.text
        assert set(ready.json()["checks"]) == {"postgres", "kafka", "redis"}
        state: PaymentServices = app.state.payment
        now = dt.datetime.now(dt.UTC)
        reservation = Reservation(
            id=str(uuid.uuid4()), status=ReservationStatus.PENDING, owner="u-alice",
            lines=(ReservationLine(sku="SKU-1", quantity=1),),
            created_at=now, updated_at=now, expires_at=now + dt.timedelta(minutes=5),
        )  # fmt: skip
        await state.ledger.record_created(reservation)
        body = {"reservationId": reservation.id, "amount": "9.99", "paymentMethod": "tok_success"}
        assert (await client.post("/api/v1/payment", json=body, headers=ALICE)).status_code == 202
        [payment] = await state.payments.for_reservation(reservation.id)
        async with state.sessions() as session, session.begin():
            await RefundService(state.sessions, None).request(session, payment)
        bus = KafkaEventBus(settings.kafka_bootstrap_servers, client_id="payment-test-relay")
        async with bus:
            assert await OutboxRelay(state.sessions, bus).relay_once() == 2
        path = f"/api/v1/payment/{reservation.id}"
        async with asyncio.timeout(60):
            while not await refund_completed(client, reservation.id):  # noqa: ASYNC110 - polling the service
                await asyncio.sleep(0.2)
        shown = (await client.get(path, headers=ALICE)).json()
        assert (shown["status"], shown["amount"]) == ("refunded", "9.99")
        assert state.processor.refunded(payment.id) == Decimal("9.99")
        assert state.processor.refund_calls == 1
