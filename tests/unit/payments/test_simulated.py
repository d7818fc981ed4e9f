"""The simulated processor: test tokens, seeded outcomes, idempotency by key."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest

from commercekit.errors import (
    ConfigurationError,
    PaymentConflict,
    PaymentDeclined,
    ProcessorUnavailable,
    RefundError,
)
from commercekit.payments import PaymentIntent, PaymentProcessor, PaymentStatus, SimulatedProcessor


def intent(key: str = "k-1", *, amount: str = "25.00", token: str = "tok_success") -> PaymentIntent:
    return PaymentIntent(
        idempotency_key=key,
        reservation_id="r-1",
        user_id="u-1",
        amount=Decimal(amount),
        currency="EUR",
        payment_method=token,
    )


def test_it_is_a_payment_processor() -> None:
    assert isinstance(SimulatedProcessor(), PaymentProcessor)


@pytest.mark.parametrize(
    ("token", "status", "code"),
    [
        ("tok_success", PaymentStatus.SUCCEEDED, None),
        ("tok_declined", PaymentStatus.FAILED, "card_declined"),
        ("tok_insufficient_funds", PaymentStatus.FAILED, "insufficient_funds"),
    ],
)
async def test_test_tokens_fix_the_outcome_whatever_the_rate(
    token: str, status: PaymentStatus, code: str | None
) -> None:
    never = SimulatedProcessor(success_rate=0.0 if status is PaymentStatus.SUCCEEDED else 1.0)
    payment = await never.charge(intent(token=token))
    assert (payment.status, payment.failure_code) == (status, code)


async def test_a_declined_payment_raises_on_demand() -> None:
    payment = await SimulatedProcessor().charge(intent(token="tok_declined"))
    with pytest.raises(PaymentDeclined) as caught:
        payment.raise_for_status()
    assert caught.value.payment == payment


async def test_tok_error_fails_without_recording_so_a_retry_may_succeed() -> None:
    processor = SimulatedProcessor()
    with pytest.raises(ProcessorUnavailable):
        await processor.charge(intent(token="tok_error"))
    assert processor.payments == []


async def test_the_success_rate_is_seeded_and_roughly_kept() -> None:
    async def outcomes(seed: int) -> list[PaymentStatus]:
        processor = SimulatedProcessor(success_rate=0.8, seed=seed)
        return [(await processor.charge(intent(f"k-{i}", token="tok_visa"))).status
                for i in range(500)]  # fmt: skip

    first, again, other = await outcomes(7), await outcomes(7), await outcomes(8)
    assert first == again
    assert first != other
    rate = first.count(PaymentStatus.SUCCEEDED) / len(first)
    assert 0.74 < rate < 0.86


async def test_the_same_key_and_body_give_the_same_payment_without_a_second_charge() -> None:
    processor = SimulatedProcessor(success_rate=0.5, seed=1)
    first = await processor.charge(intent(token="tok_visa"))
    again = await processor.charge(intent(amount="25.0", token="tok_visa"))  # same amount
    assert again == first
    assert len(processor.payments) == 1


async def test_the_same_key_with_another_body_is_a_conflict() -> None:
    processor = SimulatedProcessor()
    await processor.charge(intent())
    with pytest.raises(PaymentConflict) as caught:
        await processor.charge(intent(amount="30.00"))
    assert caught.value.idempotency_key == "k-1"
    assert len(processor.payments) == 1


async def test_concurrent_retries_with_one_key_charge_once() -> None:
    processor = SimulatedProcessor(latency=0.02)
    payments = await asyncio.gather(*(processor.charge(intent()) for _ in range(10)))
    assert len({p.id for p in payments}) == 1
    assert len(processor.payments) == 1
    assert processor.charge_calls == 10


async def test_latency_is_waited() -> None:
    processor = SimulatedProcessor(latency=0.05)
    started = time.monotonic()
    await processor.charge(intent())
    assert time.monotonic() - started >= 0.05


async def test_a_refund_is_idempotent_by_key_and_bounded_by_the_payment() -> None:
    processor = SimulatedProcessor()
    payment = await processor.charge(intent())
    receipt = await processor.refund(payment, Decimal("10.00"), "rf-1")
    assert await processor.refund(payment, Decimal("10.00"), "rf-1") == receipt
    assert processor.refunded(payment.id) == Decimal("10.00")
    with pytest.raises(PaymentConflict):
        await processor.refund(payment, Decimal("5.00"), "rf-1")
    with pytest.raises(RefundError, match=r"only 15\.00 is left"):
        await processor.refund(payment, Decimal("20.00"), "rf-2")


async def test_a_failed_or_unknown_payment_cannot_be_refunded() -> None:
    processor = SimulatedProcessor()
    failed = await processor.charge(intent(token="tok_declined"))
    with pytest.raises(RefundError):
        await processor.refund(failed, Decimal("1"), "rf-1")
    stranger = await SimulatedProcessor().charge(intent())
    with pytest.raises(RefundError):
        await processor.refund(stranger, Decimal("1"), "rf-2")


@pytest.mark.parametrize("kwargs", [{"success_rate": 1.5}, {"latency": -1.0}, {"latency": (2, 1)}])
def test_unusable_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        SimulatedProcessor(**kwargs)  # type: ignore[arg-type]


def test_money_is_never_a_float() -> None:
    with pytest.raises(ValueError, match="decimal string"):
        PaymentIntent(
            idempotency_key="k", reservation_id="r", user_id="u",
            amount=25.0, currency="EUR",  # type: ignore[arg-type]
        )  # fmt: skip
