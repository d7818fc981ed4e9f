"""Payments: a processor protocol and its simulation, refund policies, refunds, settlement.

```python
from commercekit.payments import PaymentIntent, SimulatedProcessor

processor = SimulatedProcessor(success_rate=0.8, seed=7)
payment = await processor.charge(PaymentIntent(idempotency_key="k-1", ...))
```

`RefundService`, `PaymentService`, `PaymentSettlement` and `redrive_payments` need
``commercekit[postgres]`` (their tables: `commercekit.sql.migrate`); they
are imported on first use, so the models, the processors and the policies
work without it, and so do the settlement's rules (`commercekit.payments.rules`).
"""

from typing import TYPE_CHECKING

from commercekit._lazy import lazy_attributes
from commercekit.payments.models import (
    Money,
    Payment,
    PaymentCase,
    PaymentIntent,
    PaymentIssue,
    PaymentStatus,
    ProcessorRefund,
    Refund,
    RefundAction,
    RefundDecision,
    RefundReason,
    RefundStatus,
)
from commercekit.payments.policy import DefaultRefundPolicy, RefundPolicy, RefundPolicyPlugin
from commercekit.payments.processor import PaymentProcessor
from commercekit.payments.rules import SettlementOutcome, outcome_of, payment_issue, refused_issue
from commercekit.payments.simulated import TEST_TOKENS, SimulatedProcessor

if TYPE_CHECKING:
    from commercekit.payments.redrive import redrive_payments
    from commercekit.payments.refunds import RefundService
    from commercekit.payments.service import PaymentService
    from commercekit.payments.settlement import (
        PaymentSettlement,
        PriceLookup,
        SettlementResult,
        settlement_outcome,
        settlement_outcomes,
    )

__all__ = [
    "TEST_TOKENS",
    "DefaultRefundPolicy",
    "Money",
    "Payment",
    "PaymentCase",
    "PaymentIntent",
    "PaymentIssue",
    "PaymentProcessor",
    "PaymentService",
    "PaymentSettlement",
    "PaymentStatus",
    "PriceLookup",
    "ProcessorRefund",
    "Refund",
    "RefundAction",
    "RefundDecision",
    "RefundPolicy",
    "RefundPolicyPlugin",
    "RefundReason",
    "RefundService",
    "RefundStatus",
    "SettlementOutcome",
    "SettlementResult",
    "SimulatedProcessor",
    "outcome_of",
    "payment_issue",
    "redrive_payments",
    "refused_issue",
    "settlement_outcome",
    "settlement_outcomes",
]

_LAZY = {
    # These need the postgres extra; import them only when asked for.
    "RefundService": "commercekit.payments.refunds",
    "PaymentService": "commercekit.payments.service",
    "PaymentSettlement": "commercekit.payments.settlement",
    "PriceLookup": "commercekit.payments.settlement",
    "SettlementResult": "commercekit.payments.settlement",
    "settlement_outcome": "commercekit.payments.settlement",
    "settlement_outcomes": "commercekit.payments.settlement",
    "redrive_payments": "commercekit.payments.redrive",
}

__getattr__ = lazy_attributes(__name__, _LAZY)
