"""RefundService on a real PostgreSQL: one refund per payment, events in the outbox."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from commercekit.errors import InvalidRequest, RefundError
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
