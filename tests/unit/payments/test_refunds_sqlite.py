"""RefundService on SQLite (the embedded mode): a refund completed twice at once is made once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from commercekit.payments import PaymentIntent, RefundService, RefundStatus, SimulatedProcessor
from commercekit.sql import migrate


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'shop.sqlite3'}")
    await migrate(engine)
    yield engine
    await engine.dispose()


async def test_a_refund_completed_twice_at_once_is_made_and_announced_once(
    engine: AsyncEngine,
) -> None:
    processor = SimulatedProcessor(latency=0.05, seed=1)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    payment = await processor.charge(
        PaymentIntent(
            idempotency_key=str(uuid.uuid4()),
            reservation_id="r-1",
            user_id="u-1",
            amount=Decimal("9.00"),
            currency="EUR",
            payment_method="tok_success",
        )
    )
    refund = await RefundService(sessions, None).refund(payment)  # recorded only
    services = [RefundService(sessions, processor) for _ in range(3)]
    done = await asyncio.gather(*(service.complete(refund.id) for service in services))
    assert {r.status for r in done} == {RefundStatus.COMPLETED}
    assert processor.refund_calls == 1
    async with engine.connect() as conn:
        completed = await conn.scalar(
            text("SELECT count(*) FROM commercekit_outbox WHERE event_type = 'refund.completed'")
        )
    assert completed == 1
