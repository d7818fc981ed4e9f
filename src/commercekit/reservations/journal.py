"""The stock journal: one row per change of stock, with its reason, reference and actor.

Every change the ledger records (stock set, restocked or adjusted, units
held, amended, released, expired, confirmed; an order's units shipped,
cancelled or returned; a repair by ``reconcile``) writes its journal rows
in the same transaction. A row moves `quantity` units of one SKU at one
location from one `StockState` to another (``None``: into or out of the
shop), so summing the rows gives every state's level: ``reconcile`` proves
they are the ledger's.

```
           set, restock, adjust
  (shop) ─────────────────────────▶ available ◀──release, expire──┐
                                      │   ▲                        │
                               reserve│   │cancel, return (resell) │
                                      ▼   │                        │
                                     held ─┴───────────────────────┘
                                      │ confirm
                                      ▼
                                  committed ──ship──▶ shipped ──return──▶ damaged
                                                                 └─────▶ written_off
```
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
from collections.abc import Iterable, Iterator
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "StockEntry",
    "StockQuantities",
    "StockReason",
    "StockState",
    "acting_as",
    "current_actor",
]


class StockState(StrEnum):
    """Where a unit of stock is; ``on hand`` is available, held and committed units."""

    AVAILABLE = "available"
    """On sale."""
    HELD = "held"
    """Held by a pending reservation."""
    COMMITTED = "committed"
    """Sold (the reservation confirmed), not shipped yet: still on hand."""
    SHIPPED = "shipped"
    """Gone with a shipment."""
    DAMAGED = "damaged"
    """Returned damaged: on hand, never to be sold."""
    WRITTEN_OFF = "written_off"
    """Returned and not restocked."""


class StockReason(StrEnum):
    """Why stock changed: the reason code of a journal row."""

    OPENING = "opening"
    """The levels the ledger had when the journal began (its migration)."""
    SET = "set"
    RESTOCK = "restock"
    ADJUST = "adjust"
    RESERVE = "reserve"
    AMEND = "amend"
    RELEASE = "release"
    EXPIRE = "expire"
    CONFIRM = "confirm"
    SHIP = "ship"
    CANCEL = "cancel"
    RETURN = "return"
    RECONCILE = "reconcile"
    """A repair: ``reconcile`` recorded what Redis had decided and the ledger had missed."""


_ACTOR: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "commercekit_stock_actor", default=None
)


@contextlib.contextmanager
def acting_as(actor: str | None) -> Iterator[None]:
    """Name `actor` (a user id, ``"sweeper"``...) in the journal rows written inside.

    ```python
    with acting_as(f"admin:{user.id}"):
        await stock.adjust("MUG", -2)
    ```

    Outside any `acting_as`, a reservation's rows name its owner, and other
    rows no one.
    """
    token = _ACTOR.set(actor)
    try:
        yield
    finally:
        _ACTOR.reset(token)


def current_actor(default: str | None = None) -> str | None:
    """The actor `acting_as` named here, else `default`."""
    actor = _ACTOR.get()
    return default if actor is None else actor


class StockQuantities(BaseModel):
    """The units of one SKU at one location in each `StockState`."""

    model_config = ConfigDict(frozen=True)

    available: int = 0
    held: int = 0
    committed: int = 0
    shipped: int = 0
    damaged: int = 0
    written_off: int = 0

    @property
    def on_hand(self) -> int:
        """Units in the warehouse and sellable or sold: available, held and committed."""
        return self.available + self.held + self.committed

    @property
    def added(self) -> int:
        """Every unit ever added (net of adjustments): all the states together."""
        return self.on_hand + self.shipped + self.damaged + self.written_off

    @property
    def sold(self) -> int:
        """Units sold and not put back on sale: committed, shipped, damaged, written off."""
        return self.committed + self.shipped + self.damaged + self.written_off

    def moved(
        self, source: StockState | None, target: StockState | None, quantity: int
    ) -> StockQuantities:
        """These quantities after `quantity` units moved from `source` to `target`."""
        change: dict[str, int] = {}
        if source is not None:
            change[source.value] = getattr(self, source.value) - quantity
        if target is not None:
            change[target.value] = change.get(target.value, getattr(self, target.value)) + quantity
        return self.model_copy(update=change)


class StockEntry(BaseModel):
    """One row of the stock journal, with the levels just before and after it.

    `before` and `after` sum every earlier row of the SKU and location in
    journal order (`id`): exact for the last row, and for a row recorded
    while no other change of that SKU and location was in flight.
    """

    model_config = ConfigDict(frozen=True)

    id: int
    at: dt.datetime
    sku: str
    location: str
    reason: StockReason
    reference: str | None = None
    """The reservation, order, shipment, cancellation or return that moved the units."""
    order_id: str | None = None
    actor: str | None = None
    quantity: int = Field(gt=0)
    source: StockState | None
    """Where the units were (None: outside the shop, e.g. stock added)."""
    target: StockState | None
    """Where they went (None: out of the shop, e.g. stock taken off)."""
    before: StockQuantities
    after: StockQuantities


def move(
    sku: str,
    location: str,
    quantity: int,
    route: tuple[StockState | None, StockState | None],
    reason: StockReason,
    *,
    reference: str | None = None,
    order_id: str | None = None,
    actor: str | None = None,
    at: dt.datetime | None = None,
) -> dict[str, Any]:
    """The values of one journal row: `quantity` units along `route` (from, to).

    A negative `quantity` moves units the other way.
    """
    source, target = route
    if quantity < 0:
        quantity, source, target = -quantity, target, source
    return {
        "at": at or dt.datetime.now(dt.UTC),
        "sku": sku,
        "location": location,
        "reason": reason.value,
        "reference": reference,
        "order_id": order_id,
        "actor": current_actor(actor),
        "quantity": quantity,
        "source": None if source is None else source.value,
        "target": None if target is None else target.value,
    }


def state(value: str | None) -> StockState | None:
    """The `StockState` stored as `value` (None: outside the shop)."""
    return None if value is None else StockState(value)


def levels(rows: Iterable[Any]) -> StockQuantities:
    """The quantities rows of ``(source, target, quantity)`` add up to."""
    total = StockQuantities()
    for source, target, quantity in rows:
        total = total.moved(state(source), state(target), int(quantity))
    return total
