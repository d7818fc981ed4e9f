"""Migration ``payments_0003``: refunds made before it count in their payment's total."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from commercekit.errors import OverRefund
from commercekit.payments import Payment, PaymentStatus, RefundService
from commercekit.sql import alembic_config

INSERT_REFUND = """
INSERT INTO commercekit_refunds (id, payment_id, reservation_id, user_id, amount, currency,
    payment_amount, action, reason, text, status, idempotency_key, requested_at)
VALUES ('rf-1', 'pay-1', 'res-1', 'u-1', 15, 'EUR', 20, 'REFUND_ALL', 'MANUAL',
    'goodwill', 'COMPLETED', 'refund:pay-1', '2026-12-01 10:00:00')
"""


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url)
    yield engine
    await engine.dispose()


def _upgrade(connection: Connection, revision: str) -> None:
    command.upgrade(alembic_config(connection), revision)


async def test_a_refund_made_before_the_migration_counts_in_its_payments_total(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, "payments_0002")
        await conn.execute(text(INSERT_REFUND))
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, "heads")
    payment = Payment(
        id="pay-1",
        reservation_id="res-1",
        user_id="u-1",
        amount=Decimal(20),
        currency="EUR",
        status=PaymentStatus.SUCCEEDED,
    )
    refunds = RefundService(async_sessionmaker(engine), None)
    assert await refunds.refundable(payment) == Decimal(5)
    with pytest.raises(OverRefund):
        await refunds.refund(payment, amount=Decimal("5.01"), key="cancel:c-1")
    second = await refunds.refund(payment, amount=Decimal(5), key="cancel:c-1")
    assert [r.id for r in await refunds.of_payment("pay-1")] == ["rf-1", second.id]
    assert await refunds.refundable(payment) == Decimal(0)
