"""`PaymentSettlement`: what the inventory side does with a payment event.

```python
settlement = PaymentSettlement(reservations, refunds, sessions, prices=price_of, plugins=plugins)
bus.subscribe("inventory", settlement.handler, types=["payment.confirmed", "payment.failed"])
```

For ``payment.confirmed`` it confirms the reservation; for
``payment.failed`` it releases it (the stock goes back, as the original
system did). When the payment cannot simply confirm its reservation (the
hold expired, was released, is unknown, was already paid by another
payment, or the amount differs from the expected total) it asks the
``commercekit_refund_decision`` hook (your plugins, then the ``policy=`` you
gave, then `DefaultRefundPolicy`: see `commercekit.payments.policy`) and
hands the refund to `RefundService`. What is wrong with a payment and what
outcome follows are the pure functions of `commercekit.payments.rules`;
`PaymentSettlement` reads, confirms and records around them.

**The expected total.** Reservations carry SKUs and quantities, not prices:
you know the prices. Pass ``prices=``, a `PriceLookup` called with the
reservation that returns its `Money` total (or None to skip the check), or
pass ``expected=`` to `settle` for one event. Without either, any amount is
accepted.

**Exactly once.** Each event is recorded in ``commercekit_processed_events``
in the transaction that records the refund and its ``refund.requested``
event, so a redelivered event, or the same event handled by two consumers
at once, has one effect. Confirming is itself exactly once (the reservation
leaves PENDING once), a payment has at most one refund (a UNIQUE row), and
of several payments for one reservation only the first to claim it may
confirm it (the others are double payments). A process that dies half-way
is safe too: the redelivery finds the confirm already made by this payment
and goes on.

**The order.** With ``orders=`` (an `OrderBook` on the same database), a
confirmed reservation's order is opened in that same transaction: it exists
exactly when the payment was settled as confirmed. It records the payment,
and what the payment paid for the goods (an overpayment's refunded
difference aside) is split over its lines, for the refunds of units
cancelled later.
"""

from __future__ import annotations

import datetime as dt
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from commercekit.errors import (
    InvalidTransition,
    MissingExtraError,
    RefundError,
    ReservationNotFound,
)
from commercekit.events.envelope import Envelope
from commercekit.events.idempotency import SqlProcessedEventStore
from commercekit.payments.models import (
    Money,
    Payment,
    PaymentCase,
    PaymentIssue,
    Refund,
    RefundDecision,
)
from commercekit.payments.policy import RefundPolicy
from commercekit.payments.refunds import RefundService
from commercekit.payments.rules import SettlementOutcome, outcome_of, payment_issue, refused_issue
from commercekit.plugins.manager import PluginManager
from commercekit.reservations.models import Reservation, ReservationStatus
from commercekit.reservations.store import ReservationStore

try:
    from sqlalchemy import select, update
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from commercekit.orders.book import OrderBook
    from commercekit.payments._tables import SettlementRow
    from commercekit.sql import insert_or_ignore
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtraError("postgres", __name__) from exc

__all__ = [
    "PaymentSettlement",
    "PriceLookup",
    "SettlementResult",
    "settlement_outcome",
    "settlement_outcomes",
]

log = logging.getLogger("commercekit.payments")

PriceLookup = Callable[[Reservation], Awaitable[Money | None] | Money | None]
"""Returns a reservation's expected total (sync or async), or None to accept any amount."""


@dataclass(frozen=True)
class SettlementResult:
    """The outcome of `PaymentSettlement.settle`."""

    payment: Payment
    outcome: SettlementOutcome
    issue: PaymentIssue | None = None
    decision: RefundDecision | None = None
    refund: Refund | None = None
    reservation: Reservation | None = None


class PaymentSettlement:
    """Settles payment events against reservations, refunding what cannot be kept.

    Args:
        reservations: the reservation store (`DurableReservations` in production).
        refunds: records and makes the refunds.
        sessions: makes the database sessions (by default the refund service's).
        policy: decides the refunds no plugin decides (by default
            `DefaultRefundPolicy`). It is registered in `plugins` (see
            `PluginManager.register_refund_policy`), so every user of that
            manager decides with it.
        plugins: asked `commercekit_refund_decision` for each payment with an
            issue, and called with `commercekit_payment_outcome` once per
            settled event (by default a manager of commercekit's own plugins,
            without the installed ones).
        prices: the reservation's expected total (see the module docs).
        consumer: the name the processed events are recorded under.
        release_on_failure: release the reservation when a payment fails.
        orders: opens the order of each reservation a payment confirms, in the
            transaction that records the outcome (its tables in the same
            database as `sessions`').
    """

    def __init__(
        self,
        reservations: ReservationStore,
        refunds: RefundService,
        sessions: async_sessionmaker[AsyncSession] | None = None,
        *,
        policy: RefundPolicy | None = None,
        plugins: PluginManager | None = None,
        prices: PriceLookup | None = None,
        consumer: str = "commercekit.payments.settlement",
        release_on_failure: bool = True,
        orders: OrderBook | None = None,
    ) -> None:
        self.reservations = reservations
        self.refunds = refunds
        self.sessions = sessions or refunds.sessions
        self.plugins = PluginManager(load_entrypoints=False) if plugins is None else plugins
        if policy is not None:
            self.plugins.register_refund_policy(policy)
        self.prices = prices
        self.consumer = consumer
        self.release_on_failure = release_on_failure
        self.orders = orders
        self.processed = SqlProcessedEventStore()

    async def handler(self, event: Envelope[Any]) -> None:
        """A bus handler: `settle` each ``payment.confirmed`` / ``payment.failed`` event."""
        await self.settle(event)

    async def settle(
        self, event: Envelope[Any], *, expected: Money | None = None
    ) -> SettlementResult:
        """Settle one payment event; a redelivery returns `SettlementOutcome.DUPLICATE`.

        Args:
            event: a ``payment.confirmed`` or ``payment.failed`` event.
            expected: the reservation's expected total (overrides `prices`).

        Raises:
            InvalidRequest: the event is not a payment event.
            BackendUnavailable: Redis or PostgreSQL is down; redeliver the event later.
        """
        payment = Payment.from_event(event)
        async with self.sessions() as session:
            if await self.processed.seen(session, self.consumer, event.id):
                return SettlementResult(payment, SettlementOutcome.DUPLICATE)
        paying = await self._claim(payment)
        if not payment.succeeded:
            return await self._record(event, payment, await self._release(payment), None, None)

        reservation = await self._get(payment.reservation_id)
        total = None
        if reservation is not None and paying:
            total = expected or await self._expected(reservation)
        issue = payment_issue(payment, reservation, paying=paying, expected=total)
        case: PaymentCase | None = None
        decision: RefundDecision | None = None
        if issue is not None:
            case = PaymentCase(
                payment=payment, issue=issue, reservation=reservation, expected=total
            )
            decision = self.plugins.refund_decision(case)
        if outcome_of(payment, case, decision) is SettlementOutcome.CONFIRMED:
            reservation, refused = await self._confirm(payment)
            issue = refused_issue(reservation, paying=paying) if refused else None
            if issue is not None:
                case = PaymentCase(payment=payment, issue=issue, reservation=reservation)
                decision = self.plugins.refund_decision(case)
        return await self._record(event, payment, reservation, case, decision)

    # ----------------------------------------------------------------- steps
    async def _get(self, reservation_id: str) -> Reservation | None:
        try:
            return await self.reservations.get(reservation_id)
        except ReservationNotFound:
            return None

    async def _confirm(self, payment: Payment) -> tuple[Reservation | None, bool]:
        """Confirm the payment's reservation: (the reservation, whether the store refused)."""
        try:
            return await self.reservations.confirm(payment.reservation_id), False
        except ReservationNotFound:
            return None, True
        except InvalidTransition as exc:  # ended, or confirmed (by this payment, before a crash?)
            return exc.reservation, True

    async def _expected(self, reservation: Reservation) -> Money | None:
        if self.prices is None:
            return None
        total = self.prices(reservation)
        if inspect.isawaitable(total):
            total = await total
        return total

    async def _claim(self, payment: Payment) -> bool:
        """Record the payment; claim its reservation if no other payment has. True: it's ours."""
        values = {
            "payment_id": payment.id,
            "reservation_id": payment.reservation_id,
            "status": payment.status.value,
            "amount": payment.amount,
            "currency": payment.currency,
        }
        async with self.sessions() as session, session.begin():
            dialect = session.get_bind().dialect.name
            for paying in [payment.reservation_id, None] if payment.succeeded else [None]:
                claim = {**values, "paying_reservation_id": paying}
                await session.execute(insert_or_ignore(dialect, SettlementRow, claim))
            row = await session.get(SettlementRow, payment.id)
            assert row is not None
            return row.paying_reservation_id == payment.reservation_id

    async def _release(self, payment: Payment) -> Reservation | None:
        """Release a failed payment's reservation (if `release_on_failure`); its state after."""
        if not self.release_on_failure:
            return None
        try:
            return await self.reservations.release(payment.reservation_id)
        except InvalidTransition as exc:
            return exc.reservation  # it had ended already: nothing to give back
        except ReservationNotFound:
            return None

    async def _record(
        self,
        event: Envelope[Any],
        payment: Payment,
        reservation: Reservation | None,
        case: PaymentCase | None,
        decision: RefundDecision | None,
    ) -> SettlementResult:
        """Claim the event, record the refund and the outcome in one transaction."""
        refund: Refund | None = None
        outcome = outcome_of(payment, case, decision)
        amount = decision.refund_amount(case) if decision and case else Decimal(0)
        async with self.sessions() as session, session.begin():
            row = await session.get(SettlementRow, payment.id, with_for_update=True)
            assert row is not None  # written by _claim
            fresh = await self.processed.claim(session, self.consumer, event.id)
            if not fresh or row.outcome is not None:
                return SettlementResult(payment, SettlementOutcome.DUPLICATE)
            if (
                self.orders is not None
                and outcome is SettlementOutcome.CONFIRMED
                and reservation is not None
                and reservation.status is ReservationStatus.CONFIRMED
            ):
                # What the payment paid for the goods: less a difference refunded now.
                paid = payment.amount - amount
                await self.orders.open_in(session, reservation, payment=payment, paid=paid)
            if amount:
                assert decision is not None
                refund, _ = await self.refunds.request(
                    session,
                    payment,
                    amount=amount,
                    decision=decision,
                    correlation_id=event.correlation_id or event.id,
                )
            await session.execute(
                update(SettlementRow)
                .where(SettlementRow.payment_id == payment.id)
                .values(
                    outcome=outcome.value,
                    issue=case.issue.value if case else None,
                    settled_at=dt.datetime.now(dt.UTC),
                    # A payment that did not confirm its reservation lets the next one try.
                    paying_reservation_id=(
                        payment.reservation_id if outcome is SettlementOutcome.CONFIRMED else None
                    )
                    if row.paying_reservation_id == payment.reservation_id
                    else None,
                )
            )
        if refund is not None and self.refunds.processor is not None:
            try:
                refund = await self.refunds.complete(refund.id)
            except RefundError:
                log.warning("refund %s left REQUESTED; retry_pending completes it", refund.id)
        self.plugins.payment_outcome(payment)
        issue = case.issue if case else None
        return SettlementResult(payment, outcome, issue, decision, refund, reservation)

    async def settlement_of(self, payment_id: str) -> SettlementOutcome | None:
        """How a payment was settled (None: not yet)."""
        return await settlement_outcome(self.sessions, payment_id)


async def settlement_outcome(
    sessions: async_sessionmaker[AsyncSession], payment_id: str
) -> SettlementOutcome | None:
    """How a payment was settled (None: not yet), read where `PaymentSettlement` records it.

    For a process that does not settle payments itself (the payment side,
    showing a payment's status) and so has no `PaymentSettlement`.
    """
    async with sessions() as session:
        outcome = await session.scalar(
            select(SettlementRow.outcome).where(SettlementRow.payment_id == payment_id)
        )
    return None if outcome is None else SettlementOutcome(outcome)


async def settlement_outcomes(
    sessions: async_sessionmaker[AsyncSession], reservation_id: str
) -> dict[str, SettlementOutcome]:
    """How each settled payment of a reservation was settled, by payment id.

    Payments not settled yet are absent. At most one is
    `SettlementOutcome.CONFIRMED`: the one that paid the reservation.
    """
    async with sessions() as session:
        rows = await session.execute(
            select(SettlementRow.payment_id, SettlementRow.outcome).where(
                SettlementRow.reservation_id == reservation_id,
                SettlementRow.outcome.is_not(None),
            )
        )
        return {
            payment_id: SettlementOutcome(outcome)
            for payment_id, outcome in rows
            if outcome is not None  # (the query has none; the type does)
        }
