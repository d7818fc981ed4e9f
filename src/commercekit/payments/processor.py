"""The `PaymentProcessor` protocol: what a card processor (or its simulation) provides."""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol, runtime_checkable

from commercekit.payments.models import Payment, PaymentIntent, ProcessorRefund

__all__ = ["PaymentProcessor"]


@runtime_checkable
class PaymentProcessor(Protocol):
    """Charges and refunds, each idempotent by its key.

    Implement it over your processor's SDK (Stripe, Adyen...): both calls
    map to requests that take an idempotency key, so a retry after a timeout
    never moves money twice.
    """

    async def charge(self, intent: PaymentIntent) -> Payment:
        """Charge the intent; return the payment, SUCCEEDED or FAILED (a decline).

        The same `intent.idempotency_key` with the same body returns the same
        payment without charging again.

        Raises:
            PaymentConflict: the key was used with a different body; nothing was charged.
            ProcessorUnavailable: the processor failed; retrying with the same key is safe.
        """
        ...

    async def refund(
        self, payment: Payment, amount: Decimal, idempotency_key: str
    ) -> ProcessorRefund:
        """Give back `amount` (in the payment's currency) of a SUCCEEDED payment.

        The same key with the same payment and amount returns the same
        receipt without refunding again.

        Raises:
            PaymentConflict: the key was used for another refund.
            RefundError: the processor refused or failed; retrying with the same key is safe.
        """
        ...
