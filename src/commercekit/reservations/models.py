"""The reservation domain: statuses, cart lines, reservations, stock levels."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

__all__ = [
    "DEFAULT_LOCATION",
    "SKU",
    "Allocation",
    "LocationName",
    "MoveId",
    "PurchaseLimit",
    "Reservation",
    "ReservationLine",
    "ReservationStatus",
    "SoldUnits",
    "StockLevel",
    "merge_lines",
]

SKU = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$"),
]
"""A stock-keeping unit: 1-200 characters, letters, digits and ``. _ : / -``."""

LocationName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]
"""A stock location (a warehouse, a store): 1-64 letters, digits and ``. _ -``."""

DEFAULT_LOCATION = "default"
"""The location of a store that has only one: stock set and held without naming a location."""

MoveId = Annotated[
    str, StringConstraints(min_length=1, max_length=140, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
]
"""The id of a move of sold units back on sale (``cancel:<id>``...): 1-140 characters.

It makes the move exactly once: the same id again changes nothing.
"""


class ReservationStatus(StrEnum):
    """Where a reservation is in its life; every status but PENDING is terminal.

    ```
    PENDING ──confirm──▶ CONFIRMED   (units sold)
       │ ────release──▶ RELEASED    (units back to available)
       └─────expire───▶ EXPIRED     (deadline passed; units back to available)
    ```
    """

    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    RELEASED = "RELEASED"
    EXPIRED = "EXPIRED"

    @property
    def is_terminal(self) -> bool:
        """Whether no further transition can happen."""
        return self is not ReservationStatus.PENDING


class ReservationLine(BaseModel):
    """One line of a cart: a SKU and a positive whole quantity."""

    model_config = ConfigDict(frozen=True, strict=True)

    sku: SKU
    quantity: Annotated[int, Field(gt=0, le=1_000_000)]


def merge_lines(lines: Iterable[ReservationLine]) -> tuple[ReservationLine, ...]:
    """Sum the lines that name the same SKU, keeping first-seen order.

    Checking each line on its own would let ``[A x 3, A x 3]`` pass against
    4 units: the sum is what must be available.
    """
    totals: dict[str, int] = {}
    for line in lines:
        totals[line.sku] = totals.get(line.sku, 0) + line.quantity
    return tuple(ReservationLine(sku=sku, quantity=qty) for sku, qty in totals.items())


class Allocation(BaseModel):
    """Units of one SKU held at (and returned to) one location.

    `backordered` of them were taken beyond the stock there, within its
    backorder cap: they are owed until stock arrives.
    """

    model_config = ConfigDict(frozen=True, strict=True)

    sku: SKU
    location: LocationName
    quantity: Annotated[int, Field(gt=0, le=1_000_000)]
    backordered: Annotated[int, Field(ge=0, le=1_000_000)] = 0


class Reservation(BaseModel):
    """A hold on stock for one owner, until it is confirmed, released or expires.

    `allocations` say where the units are held, when the cart was reserved
    in a `commercekit.reservations.Channel`; without one (empty), every unit
    is at `DEFAULT_LOCATION` (see `holdings`).
    """

    model_config = ConfigDict(frozen=True)

    id: str
    status: ReservationStatus
    owner: str
    lines: tuple[ReservationLine, ...]
    created_at: dt.datetime
    updated_at: dt.datetime
    expires_at: dt.datetime
    idempotency_key: str | None = None
    allocations: tuple[Allocation, ...] = ()

    @property
    def holdings(self) -> tuple[Allocation, ...]:
        """Where every unit is: the allocations, or each line at `DEFAULT_LOCATION`."""
        if self.allocations:
            return self.allocations
        return tuple(
            Allocation(sku=line.sku, location=DEFAULT_LOCATION, quantity=line.quantity)
            for line in self.lines
        )

    @property
    def backordered(self) -> int:
        """Units held on backorder (beyond the stock of their location)."""
        return sum(a.backordered for a in self.allocations)

    @property
    def total_quantity(self) -> int:
        """Units held (or sold) across all lines."""
        return sum(line.quantity for line in self.lines)

    def quantity_of(self, sku: str) -> int:
        """Units of `sku` in this reservation (0 if absent)."""
        return sum(line.quantity for line in self.lines if line.sku == sku)


class SoldUnits(BaseModel):
    """Units of one SKU sold at one location (a line of a move back on sale).

    They go back on sale at `restock_at` when it names another location
    (a return received at another warehouse), else where they were sold.
    """

    model_config = ConfigDict(frozen=True)

    sku: SKU
    location: LocationName = DEFAULT_LOCATION
    quantity: Annotated[int, Field(gt=0, le=1_000_000_000)]
    restock_at: LocationName | None = None

    @property
    def back_at(self) -> str:
        """Where the units go back on sale."""
        return self.location if self.restock_at is None else self.restock_at


class StockLevel(BaseModel):
    """The stock of one SKU at one location: ``available + held + sold`` is every unit added.

    With a backorder cap (`backorder`), holds may take units beyond the
    stock: `available` is then negative, never below ``-backorder``, and
    `backordered` is how many units are owed.
    """

    model_config = ConfigDict(frozen=True)

    sku: str
    location: str = DEFAULT_LOCATION
    available: int
    held: int
    sold: int
    backorder: int = 0

    @property
    def on_hand(self) -> int:
        """Units not sold yet (available or held)."""
        return self.available + self.held

    @property
    def backordered(self) -> int:
        """Units held beyond the stock (owed until stock arrives)."""
        return max(0, -self.available)

    @property
    def sellable(self) -> int:
        """Units a reserve may still take here: the available ones and the backorder room."""
        return max(0, self.available + self.backorder)


class PurchaseLimit(BaseModel):
    """At most `quantity` units of `sku` held or bought by one owner within `window`.

    Units count from the moment they are held; a hold released or expired
    stops counting, a confirmed one counts until its window has passed.
    """

    model_config = ConfigDict(frozen=True)

    sku: SKU
    quantity: Annotated[int, Field(gt=0, le=1_000_000)]
    window: dt.timedelta
