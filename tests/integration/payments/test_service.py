"""PaymentService: one charge, one row and one event per idempotency key."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from sqlalchemy import text

from commercekit.errors import PaymentConflict
from commercekit.events import CATALOG
from commercekit.payments import PaymentIntent, PaymentService, PaymentStatus, SimulatedProcessor

from .conftest import Sessions, outbox_types


def intent(amount: str = "20.00", token: str = "tok_success") -> PaymentIntent:
    return PaymentIntent(
        idempotency_key="order-1", reservation_id="r-1", user_id="u-1",
        amount=Decimal(amount), currency="EUR", payment_method=token,
    )  # fmt: skip


async def test_concurrent_retries_charge_once_and_announce_once(
    sessions: Sessions, processor: SimulatedProcessor
) -> None:
    services = [PaymentService(sessions, processor) for _ in range(5)]
    payments = await asyncio.gather(*(s.pay(intent()) for s in services))
    assert len({p.id for p in payments}) == 1
    assert len(processor.payments) == 1
    assert await outbox_types(sessions) == ["payment.confirmed"]
    assert await services[0].get("order-1") == payments[0]


async def test_another_body_with_the_key_is_a_conflict_and_no_second_charge(
    sessions: Sessions, processor: SimulatedProcessor
) -> None:
    service = PaymentService(sessions, processor)
    await service.pay(intent())
    with pytest.raises(PaymentConflict):
        await service.pay(intent(amount="21.00"))
    assert len(processor.payments) == 1


async def test_a_decline_is_recorded_and_announced_as_payment_failed(
    sessions: Sessions, processor: SimulatedProcessor
) -> None:
    payment = await PaymentService(sessions, processor).pay(intent(token="tok_insufficient_funds"))
    assert payment.status is PaymentStatus.FAILED
    async with sessions() as session:
        body = await session.scalar(text("SELECT body FROM commercekit_outbox"))
    event = CATALOG.decode(body)
    assert event.type == "payment.failed"
    assert event.data.reason == "the card has insufficient funds"
