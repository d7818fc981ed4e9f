"""The order domain: what a confirmed reservation still commits: shipped, cancelled."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from commercekit.events.payload import Amount, Currency
from commercekit.reservations.models import SKU, LocationName

__all__ = [
    "Cancellation",
    "CancellationId",
    "CancellationLine",
    "Order",
    "OrderLine",
    "OrderPayment",
    "OrderStatus",
    "RestockType",
    "Return",
    "ReturnId",
    "ReturnLine",
    "Shipment",
    "ShipmentId",
    "ShipmentLine",
]

ShipmentId = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
]
"""A shipment's id, chosen by the caller (a carrier's label, a packing slip): 1-100 characters.

It makes a shipment exactly once: the same id again is answered with the
shipment it made, never a second one.
"""

CancellationId = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
]
"""A cancellation's id, chosen by the caller (a support ticket, a request id): 1-100 characters.

It cancels exactly once: the same id again is answered with the cancellation
it made, and its units go back on sale once.
"""

ReturnId = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
]
"""A return's id, chosen by the caller (an RMA number, a parcel's label): 1-100 characters.

It receives a return exactly once: the same id again is answered with the
return it made, its units restocked and refunded once.
"""

Units = Annotated[int, Field(ge=0, le=1_000_000_000)]


class RestockType(StrEnum):
    """What becomes of a returned unit."""

    RESELL = "RESELL"
    """Back on sale where it shipped from."""
    DAMAGED = "DAMAGED"
    """Back on hand, never sold again: counted apart (`OrderBook.damaged`)."""
    NONE = "NONE"
    """Not back at all (kept by the customer, lost, destroyed): written off."""


class OrderStatus(StrEnum):
    """Where an order stands: units still to ship, some shipped, all of them, or none ever."""

    OPEN = "OPEN"
    """Nothing shipped yet, units still committed."""
    PARTIALLY_FULFILLED = "PARTIALLY_FULFILLED"
    """Some units shipped, some still committed."""
    FULFILLED = "FULFILLED"
    """Every unit shipped, or cancelled after some shipped: nothing left to ship."""
    CANCELLED = "CANCELLED"
    """Every unit cancelled, none shipped."""


class OrderLine(BaseModel):
    """The units of one SKU an order holds at one location: shipped, cancelled, committed.

    `committed` units are still on hand there, sold: no longer available,
    not yet gone. Cancelled ones went back on sale there.
    """

    model_config = ConfigDict(frozen=True)

    sku: SKU
    location: LocationName
    quantity: Annotated[int, Field(gt=0, le=1_000_000_000)]
    shipped: Units = 0
    cancelled: Units = 0
    returned: Units = 0
    """Shipped units that came back (resold, damaged or written off)."""
    damaged: Units = 0
    """Of the returned units, those back on hand here that are never to be sold."""
    resold: Units = 0
    """Of the returned units, those back on sale here."""
    refunded: Units = 0
    """Units whose share of `amount` was refunded (cancelled ones, returned ones)."""
    amount: Amount | None = None
    """What was paid for the line's `quantity` units (None: the order has no payment)."""

    @property
    def committed(self) -> int:
        """Units sold here, neither shipped nor cancelled yet."""
        return self.quantity - self.shipped - self.cancelled

    @property
    def sold(self) -> int:
        """Units taken off sale here and not put back (committed, shipped, damaged, written off).

        Summed over every order, it is what the stock ledger counts sold here
        once every confirmed reservation is an order.
        """
        return self.quantity - self.cancelled - self.resold

    @property
    def returnable(self) -> int:
        """Units shipped and not returned yet."""
        return self.shipped - self.returned


class OrderPayment(BaseModel):
    """The payment behind an order: its id, its whole amount and its currency.

    What it paid for the goods is split over the order's lines
    (`OrderLine.amount`); a part of it the settlement refunded at once (an
    overpayment's difference) is not in them.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    amount: Amount
    currency: Currency


class Order(BaseModel):
    """A confirmed reservation's units, from payment until they ship.

    Its id is the reservation's. Its lines are per SKU and location, as the
    units were held: a kit's components, each where it was allocated.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    owner: str
    status: OrderStatus
    lines: tuple[OrderLine, ...]
    created_at: dt.datetime
    updated_at: dt.datetime
    payment: OrderPayment | None = None
    """The payment that confirmed the reservation (None: the order was opened without one)."""

    @property
    def committed(self) -> int:
        """Units of every line neither shipped nor cancelled yet."""
        return sum(line.committed for line in self.lines)

    def line(self, sku: str, location: str) -> OrderLine | None:
        """The line of `sku` at `location`, if the order has one."""
        return next((ln for ln in self.lines if (ln.sku, ln.location) == (sku, location)), None)


class _UnitsAt(BaseModel):
    model_config = ConfigDict(frozen=True)

    sku: SKU
    location: LocationName
    quantity: Annotated[int, Field(gt=0, le=1_000_000_000)]


class ShipmentLine(_UnitsAt):
    """Units of one SKU that left one location in a shipment."""


class CancellationLine(_UnitsAt):
    """Units of one SKU a cancellation put back on sale at one location."""


class Shipment(BaseModel):
    """Units of an order that left, once: its id is never used for another shipment."""

    model_config = ConfigDict(frozen=True)

    id: ShipmentId
    order_id: str
    lines: tuple[ShipmentLine, ...]
    created_at: dt.datetime


class Cancellation(BaseModel):
    """Units of an order cancelled before they shipped, once: back on sale where they were.

    Its id is never used for another cancellation.
    """

    model_config = ConfigDict(frozen=True)

    id: CancellationId
    order_id: str
    lines: tuple[CancellationLine, ...]
    created_at: dt.datetime
    refund_id: str | None = None
    """The refund of what the units were paid (None: nothing refunded, or no refunds kept)."""
    refunded: Amount = Decimal(0)
    """How much that refund gives back."""


class ReturnLine(_UnitsAt):
    """Units of one SKU that came back from the location they shipped from, and their fate."""

    restock: RestockType
    restock_at: LocationName | None = None
    """Where RESELL units went on sale, when not at `location` (None: there)."""


class Return(BaseModel):
    """Shipped units of an order received back, once: restocked as each line says.

    Its id is never used for another return.
    """

    model_config = ConfigDict(frozen=True)

    id: ReturnId
    order_id: str
    lines: tuple[ReturnLine, ...]
    created_at: dt.datetime
    refund_id: str | None = None
    """The refund of what the units were paid (None: nothing refunded)."""
    refunded: Amount = Decimal(0)
    """How much that refund gives back."""
