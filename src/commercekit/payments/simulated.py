"""`SimulatedProcessor`: a payment processor in memory, random or deterministic.

```python
processor = SimulatedProcessor(success_rate=0.8, latency=0.2, seed=7)
payment = await processor.charge(
    PaymentIntent(
        idempotency_key="order-1",
        reservation_id="r-1",
        user_id="u-1",
        amount=Decimal("25.00"),
        currency="EUR",
        payment_method="tok_success",
    )
)
```

Like a card processor's test cards, some tokens fix the outcome whatever
the success rate:

| token | outcome |
|---|---|
| ``tok_success`` | SUCCEEDED |
| ``tok_declined`` | FAILED, ``card_declined`` |
| ``tok_insufficient_funds`` | FAILED, ``insufficient_funds`` |
| ``tok_error`` | raises `ProcessorUnavailable` (nothing is recorded; a retry is allowed) |

Any other token succeeds with probability `success_rate` (the original
system: 80 %), drawn from a generator seeded with `seed`.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from commercekit.errors import (
    ConfigurationError,
    InvalidRequest,
    PaymentConflict,
    ProcessorUnavailable,
    RefundError,
)
from commercekit.payments.models import Payment, PaymentIntent, PaymentStatus, ProcessorRefund

__all__ = ["TEST_TOKENS", "SimulatedProcessor"]

TEST_TOKENS: dict[str, tuple[PaymentStatus, str | None, str | None]] = {
    "tok_success": (PaymentStatus.SUCCEEDED, None, None),
    "tok_declined": (PaymentStatus.FAILED, "card_declined", "the card was declined"),
    "tok_insufficient_funds": (
        PaymentStatus.FAILED,
        "insufficient_funds",
        "the card has insufficient funds",
    ),
}
"""The tokens with a fixed outcome: status, failure code, failure message."""

ERROR_TOKEN = "tok_error"  # noqa: S105 - a test card, not a secret
"""The token whose charge fails with `ProcessorUnavailable`."""


@dataclass
class _Refunds:
    by_key: dict[str, tuple[str, Decimal, ProcessorRefund]] = field(default_factory=dict)
    refunded: dict[str, Decimal] = field(default_factory=dict)


class SimulatedProcessor:
    """A `PaymentProcessor` that keeps its charges and refunds in memory.

    Args:
        success_rate: the probability that a charge with a token not in
            `TEST_TOKENS` succeeds (0.0-1.0).
        latency: seconds each call waits, or a ``(low, high)`` range drawn
            uniformly, to make races and timeouts visible.
        seed: seeds the generator of outcomes and latencies (reproducible runs).
        id_factory: makes the payment and refund ids (UUIDs by default).
        shared: refund a SUCCEEDED payment this instance did not charge, up to
            its amount (its record comes from the database). Set it when
            several processes stand for one simulated processor, as the
            replicas of a payment service do.

    Attributes:
        charge_calls: how many charges reached the processor (replays included).
        refund_calls: how many refund requests reached it (replays included).
    """

    def __init__(
        self,
        *,
        success_rate: float = 0.8,
        latency: float | tuple[float, float] = 0.0,
        seed: int | None = None,
        id_factory: Callable[[], str] | None = None,
        shared: bool = False,
    ) -> None:
        if not 0.0 <= success_rate <= 1.0:
            raise ConfigurationError(f"success_rate must be within 0..1, got {success_rate}")
        low, high = latency if isinstance(latency, tuple) else (latency, latency)
        if low < 0 or high < low:
            raise ConfigurationError(f"latency must be >= 0 (and low <= high), got {latency}")
        self.success_rate = success_rate
        self.latency = (low, high)
        self.shared = shared
        # Not cryptography: a seedable simulation of outcomes.
        self._random = random.Random(seed)  # noqa: S311
        self._new_id = id_factory or (lambda: str(uuid.uuid4()))
        self._charges: dict[str, tuple[str, Payment]] = {}
        self._payments: dict[str, Payment] = {}
        self._refunds = _Refunds()
        self._lock = asyncio.Lock()
        self.charge_calls = 0
        self.refund_calls = 0

    # ------------------------------------------------------------ inspection
    @property
    def payments(self) -> list[Payment]:
        """Every payment made, in order."""
        return list(self._payments.values())

    @property
    def refunds(self) -> list[ProcessorRefund]:
        """Every refund made, in order (a replayed request adds none)."""
        return [receipt for _, _, receipt in self._refunds.by_key.values()]

    def refunded(self, payment_id: str) -> Decimal:
        """How much of a payment was given back."""
        return self._refunds.refunded.get(payment_id, Decimal(0))

    # ------------------------------------------------------------------ calls
    async def _wait(self) -> None:
        low, high = self.latency
        delay = low if low == high else self._random.uniform(low, high)
        if delay:
            await asyncio.sleep(delay)

    async def charge(self, intent: PaymentIntent) -> Payment:
        """See `PaymentProcessor.charge`."""
        self.charge_calls += 1
        await self._wait()
        fingerprint = intent.fingerprint()
        async with self._lock:
            known = self._charges.get(intent.idempotency_key)
            if known is not None:
                if known[0] != fingerprint:
                    raise PaymentConflict(intent.idempotency_key)
                return known[1]
            if intent.payment_method == ERROR_TOKEN:
                raise ProcessorUnavailable("simulated processor error (tok_error)")
            status, code, message = TEST_TOKENS.get(intent.payment_method) or self._draw()
            payment = Payment(
                id=self._new_id(),
                reservation_id=intent.reservation_id,
                user_id=intent.user_id,
                amount=intent.amount,
                currency=intent.currency,
                status=status,
                idempotency_key=intent.idempotency_key,
                failure_code=code,
                failure_message=message,
            )
            self._charges[intent.idempotency_key] = (fingerprint, payment)
            self._payments[payment.id] = payment
            return payment

    def _draw(self) -> tuple[PaymentStatus, str | None, str | None]:
        if self._random.random() < self.success_rate:
            return PaymentStatus.SUCCEEDED, None, None
        return PaymentStatus.FAILED, "card_declined", "the card was declined (simulated)"

    async def refund(
        self, payment: Payment, amount: Decimal, idempotency_key: str
    ) -> ProcessorRefund:
        """See `PaymentProcessor.refund`."""
        self.refund_calls += 1
        await self._wait()
        if amount <= 0:
            raise InvalidRequest(f"a refund amount is greater than zero, got {amount}")
        async with self._lock:
            known = self._refunds.by_key.get(idempotency_key)
            if known is not None:
                if (known[0], known[1]) != (payment.id, amount):
                    raise PaymentConflict(idempotency_key)
                return known[2]
            charged = self._payments.get(payment.id) or (payment if self.shared else None)
            if charged is None or not charged.succeeded:
                raise RefundError(f"payment {payment.id} was not charged by this processor")
            left = charged.amount - self.refunded(payment.id)
            if amount > left:
                raise RefundError(
                    f"cannot refund {amount} {charged.currency} of payment {payment.id}: "
                    f"only {left} is left"
                )
            receipt = ProcessorRefund(
                id=self._new_id(),
                payment_id=payment.id,
                amount=amount,
                currency=charged.currency,
                idempotency_key=idempotency_key,
            )
            self._refunds.by_key[idempotency_key] = (payment.id, amount, receipt)
            self._refunds.refunded[payment.id] = self.refunded(payment.id) + amount
            return receipt
