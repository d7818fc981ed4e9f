"""`OrderAudit`: the orders checked against the stock journal and the payments.

The ledger's ``reconcile`` proves the stock journal sums to the ledger;
`OrderBook.audit` proves the orders agree with both, in one snapshot:

- per SKU and location, the journal's committed units are the orders'
  units neither shipped nor cancelled, plus those of confirmed reservations
  no order has opened yet (a payment settles the order in a transaction of
  its own); its shipped, damaged and written-off units are the orders'
  shipped and not returned, returned damaged, and returned without restock;
- per order line, no counter exceeds what it counts from (shipped and
  cancelled within the units ordered, returned within shipped, damaged and
  resold within returned, refunded within cancelled and returned);
- per order, what was refunded never exceeds what its payment paid.

Nothing here repairs: the orders and the journal are written in one
transaction, so a difference is a change made behind the library's back,
and which side is right is for a person to decide.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from commercekit.errors import MissingExtraError
from commercekit.reservations.journal import StockQuantities
from commercekit.reservations.models import DEFAULT_LOCATION

try:
    from sqlalchemy import exists, func, or_, select, union_all
    from sqlalchemy.ext.asyncio import AsyncConnection

    from commercekit.orders._tables import CancellationRow, OrderLineRow, OrderRow, ReturnRow
    from commercekit.payments._tables import RefundRow
    from commercekit.reservations.ledger import ReservationRow, journal_levels_in, units_held_in
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtraError("postgres", __name__) from exc

__all__ = ["OrderAudit"]

_STATES = ("committed", "shipped", "damaged", "written_off")


@dataclass
class OrderAudit:
    """What `OrderBook.audit` found; `clean` when the orders agree with the journal and payments."""

    stock_drift: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per SKU (``sku@location`` past the default location), per state (``committed``,
    ``shipped``, ``damaged``, ``written_off``): the journal's units minus the orders'."""
    line_errors: dict[str, list[str]] = field(default_factory=dict)
    """Per order, its lines whose counters are impossible (shipped more than ordered...)."""
    over_refunded: dict[str, Decimal] = field(default_factory=dict)
    """Per order, how much more than its payment paid was refunded."""
    unopened: int = 0
    """Confirmed reservations no order has opened yet (counted as committed; not an error)."""

    @property
    def clean(self) -> bool:
        """Whether the orders agree with the stock journal and with their payments."""
        return not (self.stock_drift or self.line_errors or self.over_refunded)


async def audit_in(conn: AsyncConnection, *, refunds: bool) -> OrderAudit:
    """`OrderBook.audit`, read on `conn` (in one snapshot: the caller's isolation level).

    With `refunds`, the refunds of the payments (``commercekit_refunds``) are
    summed; without, those the orders' cancellations and returns requested.
    """
    report = OrderAudit()
    journal = await journal_levels_in(conn)
    expected = await _expected_levels(conn)
    no_order = ~exists().where(OrderRow.id == ReservationRow.id)
    waiting = await units_held_in(conn, (ReservationRow.status == "CONFIRMED") & no_order)
    for here, units in waiting.items():
        expected.setdefault(here, dict.fromkeys(_STATES, 0))["committed"] += units
    report.unopened = int(
        await conn.scalar(
            select(func.count()).where((ReservationRow.status == "CONFIRMED") & no_order)
        )
        or 0
    )
    for here in sorted(expected.keys() | journal.keys()):
        seen = journal.get(here, StockQuantities())
        want = expected.get(here, dict.fromkeys(_STATES, 0))
        off = {
            state: getattr(seen, state) - want[state]
            for state in _STATES
            if getattr(seen, state) != want[state]
        }
        if off:
            sku, location = here
            report.stock_drift[sku if location == DEFAULT_LOCATION else f"{sku}@{location}"] = off
    report.line_errors = await _line_errors(conn)
    report.over_refunded = await _over_refunded(conn, refunds=refunds)
    return report


async def _expected_levels(conn: AsyncConnection) -> dict[tuple[str, str], dict[str, int]]:
    """Per SKU and location, the units the orders say are in each state."""
    line = OrderLineRow
    sums = (
        func.sum(line.quantity - line.shipped - line.cancelled),
        func.sum(line.shipped - line.returned),
        func.sum(line.damaged),
        func.sum(line.returned - line.damaged - line.resold),
    )
    rows = await conn.execute(
        select(line.sku, line.location, *sums).group_by(line.sku, line.location)
    )
    return {
        (sku, location): dict(zip(_STATES, map(int, units), strict=True))
        for sku, location, *units in rows
    }


_IMPOSSIBLE: tuple[tuple[str, Any], ...] = (
    ("shipped and cancelled more than ordered",
     OrderLineRow.shipped + OrderLineRow.cancelled > OrderLineRow.quantity),
    ("returned more than shipped", OrderLineRow.returned > OrderLineRow.shipped),
    ("damaged and resold more than returned",
     OrderLineRow.damaged + OrderLineRow.resold > OrderLineRow.returned),
    ("refunded more than cancelled and returned",
     OrderLineRow.refunded > OrderLineRow.cancelled + OrderLineRow.returned),
    ("a negative count", or_(*(column < 0 for column in (
        OrderLineRow.quantity, OrderLineRow.shipped, OrderLineRow.cancelled,
        OrderLineRow.returned, OrderLineRow.damaged, OrderLineRow.resold,
        OrderLineRow.refunded)))),
)  # fmt: skip


async def _line_errors(conn: AsyncConnection) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for what, wrong in _IMPOSSIBLE:
        rows = await conn.execute(
            select(OrderLineRow.order_id, OrderLineRow.sku, OrderLineRow.location)
            .where(wrong)
            .order_by(OrderLineRow.order_id, OrderLineRow.sku, OrderLineRow.location)
        )
        for order_id, sku, location in rows:
            errors.setdefault(order_id, []).append(f"{sku} at {location}: {what}")
    return errors


async def _over_refunded(conn: AsyncConnection, *, refunds: bool) -> dict[str, Decimal]:
    """Per order with a payment, what was refunded beyond the payment's amount."""
    if refunds:  # every refund of the payment, the orders' own and any other
        refunded = select(
            RefundRow.payment_id.label("paid_by"), RefundRow.amount.label("amount")
        ).subquery()
        key = OrderRow.payment_id
    else:  # what the orders' cancellations and returns refunded
        refunded = union_all(
            *(
                select(table.order_id.label("paid_by"), table.refunded.label("amount"))
                for table in (CancellationRow, ReturnRow)
            )
        ).subquery()
        key = OrderRow.id
    total = func.sum(refunded.c.amount)
    rows = await conn.execute(
        select(OrderRow.id, OrderRow.payment_amount, total)
        .join(refunded, refunded.c.paid_by == key)
        .where(OrderRow.payment_amount.is_not(None))
        .group_by(OrderRow.id, OrderRow.payment_amount)
        .having(total > OrderRow.payment_amount)
    )
    return {order_id: Decimal(given_back) - Decimal(paid) for order_id, paid, given_back in rows}
