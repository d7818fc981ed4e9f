from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal

import pytest
import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from commercekit.events import Envelope, PaymentConfirmed, PaymentFailed
from commercekit.payments import Payment, PaymentIntent, RefundService, SimulatedProcessor
from commercekit.reservations import DurableReservations, RedisReservationStore, ReservationLedger
from commercekit.sql import migrate
from commercekit.testing.servers import PostgresServer, RedisServer

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def engine(postgres_server: PostgresServer) -> AsyncIterator[AsyncEngine]:
    url = postgres_server.create_database(f"payments_{uuid.uuid4().hex[:10]}")
    engine = create_async_engine(
        url.replace("postgresql://", "postgresql+asyncpg://"), pool_size=10, max_overflow=10
    )
    await migrate(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> Sessions:
    return async_sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
def make_reservations(
    engine: AsyncEngine, redis_client: aioredis.Redis
) -> Callable[[], DurableReservations]:
    """Replicas of one durable store: same Redis namespace, same ledger."""
    prefix = f"p{uuid.uuid4().hex[:8]}"

    def replica() -> DurableReservations:
        store = RedisReservationStore(redis_client, prefix=prefix, guarded=True)
        return DurableReservations(store, ReservationLedger(engine))

    return replica


@pytest.fixture
async def reservations(make_reservations: Callable[[], DurableReservations]) -> DurableReservations:
    durable = make_reservations()
    await durable.start()
    await durable.set_stock("SKU-1", 10)
    return durable


@pytest.fixture
def processor() -> SimulatedProcessor:
    return SimulatedProcessor(latency=0.01, seed=1)


@pytest.fixture
def refunds(sessions: Sessions, processor: SimulatedProcessor) -> RefundService:
    return RefundService(sessions, processor)


async def pay(
    processor: SimulatedProcessor,
    reservation_id: str,
    amount: str = "20.00",
    *,
    key: str | None = None,
    token: str = "tok_success",
) -> tuple[Payment, Envelope[PaymentConfirmed] | Envelope[PaymentFailed]]:
    """Charge through the processor; the event the payment service would publish."""
    payment = await processor.charge(
        PaymentIntent(
            idempotency_key=key or str(uuid.uuid4()),
            reservation_id=reservation_id,
            user_id="u-1",
            amount=Decimal(amount),
            currency="EUR",
            payment_method=token,
        )
    )
    fields = {
        "payment_id": payment.id,
        "reservation_id": reservation_id,
        "user_id": "u-1",
        "amount": payment.amount,
        "currency": "EUR",
    }
    if payment.succeeded:
        return payment, Envelope.wrap(PaymentConfirmed(**fields), source="payments")
    failed = PaymentFailed(**fields, reason=payment.failure_code or "failed")
    return payment, Envelope.wrap(failed, source="payments")


async def outbox_types(sessions: Sessions) -> list[str]:
    async with sessions() as session:
        rows = await session.execute(text("SELECT event_type FROM commercekit_outbox ORDER BY id"))
        return [row[0] for row in rows]


async def refund_rows(sessions: Sessions) -> list[tuple[str, str, Decimal, str, str, str]]:
    query = "SELECT payment_id, reason, amount, action, status, text FROM commercekit_refunds"
    async with sessions() as session:
        return [tuple(row) for row in await session.execute(text(query))]  # type: ignore[misc]
