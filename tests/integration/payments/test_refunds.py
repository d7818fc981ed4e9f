"""RefundService on a real PostgreSQL: one refund per payment and key, never past what was paid."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from commercekit.errors import InvalidRequest, OverRefund, RefundError
from commercekit.payments import (
    Payment,
    ProcessorRefund,
    RefundAction,
    RefundDecision,
    RefundReason,
    RefundService,
    RefundStatus,
    SimulatedProcessor,
)

from .conftest import Sessions, outbox_types, pay, refund_rows


async def test_a_duplicated_refund_request_is_a_no_op(
    sessions: Sessions, processor: SimulatedProcessor, refunds: RefundService
) -> None:
    payment, _ = await pay(processor, "r-1")
    first = await refunds.refund(payment)
    again = await refunds.refund(payment)  # the original's "force a refund" script, run twice
    assert again == first
    assert first.status is RefundStatus.COMPLETED
    assert first.processor_refund_id is not None
    assert processor.refund_calls == 1
    assert processor.refunded(payment.id) == Decimal("20.00")
    assert await outbox_types(sessions) == ["refund.requested", "refund.completed"]


async def test_concurrent_requests_for_one_payment_refund_once(
    sessions: Sessions, processor: SimulatedProcessor, refunds: RefundService
) -> None:
    payment, _ = await pay(processor, "r-1")
    others = [RefundService(sessions, processor) for _ in range(4)]
    results = await asyncio.gather(*(service.refund(payment) for service in [refunds, *others]))
    assert len({r.id for r in results}) == 1
    assert processor.refund_calls == 1
    assert len(await refund_rows(sessions)) == 1
    assert await outbox_types(sessions) == ["refund.requested", "refund.completed"]


async def test_a_partial_refund_records_its_decision(
    sessions: Sessions, processor: SimulatedProcessor, refunds: RefundService
) -> None:
    payment, _ = await pay(processor, "r-1", "25.00")
    decision = RefundDecision(
        action=RefundAction.REFUND_DIFFERENCE, reason=RefundReason.OVERPAYMENT, text="5 too much"
    )
    refund = await refunds.refund(payment, amount=Decimal("5.00"), decision=decision)
    assert (refund.amount, refund.reason, refund.text) == (
        Decimal("5.00"),
        RefundReason.OVERPAYMENT,
        "5 too much",
    )
    assert processor.refunded(payment.id) == Decimal("5.00")
    assert await refunds.get(payment.id) == refund


async def test_bad_refunds_are_refused_before_anything_is_written(
    sessions: Sessions, processor: SimulatedProcessor, refunds: RefundService
) -> None:
    payment, _ = await pay(processor, "r-1")
    with pytest.raises(InvalidRequest):
        await refunds.refund(payment, amount=Decimal("20.01"))
    declined, _ = await pay(processor, "r-2", token="tok_declined")
    with pytest.raises(InvalidRequest):
        await refunds.refund(declined)
    assert await refund_rows(sessions) == []
    assert await outbox_types(sessions) == []


class FlakyProcessor(SimulatedProcessor):
    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def refund(
        self, payment: Payment, amount: Decimal, idempotency_key: str
    ) -> ProcessorRefund:
        if self.failures:
            self.failures -= 1
            self.refund_calls += 1
            raise RefundError("processor said no, for now")
        return await super().refund(payment, amount, idempotency_key)


async def test_a_refused_refund_stays_requested_and_is_retried(sessions: Sessions) -> None:
    processor = FlakyProcessor(failures=1)
    refunds = RefundService(sessions, processor)
    payment, _ = await pay(processor, "r-1")
    with pytest.raises(RefundError):
        await refunds.refund(payment)
    pending = await refunds.get(payment.id)
    assert pending is not None
    assert pending.status is RefundStatus.REQUESTED
    assert pending.last_error == "processor said no, for now"
    assert await outbox_types(sessions) == ["refund.requested"]

    done = await refunds.retry_pending()
    assert [r.status for r in done] == [RefundStatus.COMPLETED]
    assert await refunds.retry_pending() == []
    assert processor.refunded(payment.id) == Decimal("20.00")
    assert await outbox_types(sessions) == ["refund.requested", "refund.completed"]


async def test_a_payment_is_refunded_once_per_key_and_never_past_what_was_paid(
    sessions: Sessions, processor: SimulatedProcessor, refunds: RefundService
) -> None:
    payment, _ = await pay(processor, "r-1", "20.00")
    first = await refunds.refund(payment, amount=Decimal("8.00"), key="cancel:c-1")
    second = await refunds.refund(payment, amount=Decimal("7.00"), key="cancel:c-2")
    assert await refunds.refund(payment, amount=Decimal("8.00"), key="cancel:c-1") == first
    assert first.id != second.id
    assert await refunds.refundable(payment) == Decimal("5.00")
    with pytest.raises(OverRefund) as raised:
        await refunds.refund(payment, amount=Decimal("5.01"), key="cancel:c-3")
    assert raised.value.refundable == Decimal("5.00")
    assert await refunds.get(payment.id, "cancel:c-3") is None  # rolled back whole
    assert await refunds.get(payment.id, "cancel:c-2") == second
    assert await refunds.get(payment.id) is None  # no settlement refund
    assert await refunds.find(first.id) == first
    assert [r.id for r in await refunds.of_payment(payment.id)] == [first.id, second.id]
    assert processor.refunded(payment.id) == Decimal("15.00")
    assert processor.refund_calls == 2
    assert await outbox_types(sessions) == ["refund.requested", "refund.completed"] * 2


async def test_concurrent_refunds_of_one_payment_never_add_up_past_it(
    sessions: Sessions, processor: SimulatedProcessor
) -> None:
    payment, _ = await pay(processor, "r-1", "10.00")
    services = [RefundService(sessions, processor) for _ in range(10)]

    async def refund(i: int) -> bool:
        try:
            await services[i].refund(payment, amount=Decimal("3.00"), key=f"k-{i}")
        except OverRefund:
            return False
        return True

    made = await asyncio.gather(*(refund(i) for i in range(10)))
    assert sum(made) == 3  # 9.00 of 10.00: a fourth 3.00 would pass it
    assert len(await refund_rows(sessions)) == 3
    assert processor.refunded(payment.id) == Decimal("9.00")
    assert await RefundService(sessions, processor).refundable(payment) == Decimal("1.00")


async def test_the_settlement_refund_and_keyed_ones_share_one_total(
    sessions: Sessions, processor: SimulatedProcessor, refunds: RefundService
) -> None:
    payment, _ = await pay(processor, "r-1", "20.00")
    await refunds.refund(payment, amount=Decimal("15.00"))  # the settlement's
    with pytest.raises(OverRefund):
        await refunds.refund(payment, amount=Decimal("6.00"), key="cancel:c-1")
    await refunds.refund(payment, amount=Decimal("5.00"), key="cancel:c-1")
    assert await refunds.refundable(payment) == Decimal(0)
    with pytest.raises(InvalidRequest):
        await refunds.refund(payment, amount=Decimal("1.00"), key="")
    with pytest.raises(InvalidRequest):
        await refunds.refund(payment, amount=Decimal("1.00"), key="k" * 200)
