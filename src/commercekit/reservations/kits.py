"""Kits: a SKU sold as a set of other SKUs (a bundle), held by holding its components.

```python
await store.define_kit("GIFT-BOX", [("MUG", 2), ("TEA", 1)])
await store.available(["GIFT-BOX"])        # {"GIFT-BOX": min(mugs // 2, teas // 1)}
hold = await store.reserve([("GIFT-BOX", 1), ("MUG", 1)], ttl=900, owner="user-42")
hold.lines          # GIFT-BOX x 1, MUG x 1: the cart as asked
hold.allocations    # MUG x 3, TEA x 1: the units held, at their locations
```

A kit keeps no stock of its own. Reserving it holds its components in the
same atomic step as the rest of the cart, after summing every line's need
of each component, so two lines sharing a component never oversell it.
Each definition has a version, raised by every change; a reservation
records the units it holds (`Reservation.allocations`), so a kit redefined
later still returns exactly what it took.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, NamedTuple, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from commercekit.errors import InvalidRequest
from commercekit.reservations import _input
from commercekit.reservations.models import SKU, ReservationLine
from commercekit.reservations.store import LineInput

__all__ = ["MAX_COMPONENTS", "Kit", "KitStore", "check_components", "kit_available"]

MAX_COMPONENTS = 50
"""The most components one kit may have."""


class Kit(BaseModel):
    """A kit SKU, what one unit of it is made of, and its definition's version (1 first)."""

    model_config = ConfigDict(frozen=True)

    sku: SKU
    components: tuple[ReservationLine, ...]
    version: Annotated[int, Field(ge=1)] = 1
    updated_at: dt.datetime | None = None

    def need(self, quantity: int) -> dict[str, int]:
        """Units of each component `quantity` kits take."""
        return {part.sku: part.quantity * quantity for part in self.components}


def check_components(sku: str, components: Sequence[LineInput]) -> tuple[ReservationLine, ...]:
    """A kit's components checked: 1 to `MAX_COMPONENTS` SKUs, each once, none the kit itself.

    Raises:
        InvalidRequest: any of that is not so.
    """
    parts = _input.check_lines(components)
    if len(parts) != len(components):
        raise InvalidRequest(f"kit {sku}: each component may be named once")
    if len(parts) > MAX_COMPONENTS:
        raise InvalidRequest(f"kit {sku}: at most {MAX_COMPONENTS} components, got {len(parts)}")
    if any(part.sku == sku for part in parts):
        raise InvalidRequest(f"kit {sku} cannot be a component of itself")
    return parts


def kit_available(kit: Kit, available: Mapping[str, int]) -> int:
    """Kits that `available` units of the components make: min of floor(units / per kit)."""
    return min(available.get(part.sku, 0) // part.quantity for part in kit.components)


class Units(NamedTuple):
    """Units of one SKU a cart holds (a kit line's are its components')."""

    sku: str
    quantity: int


def expand(cart: Iterable[ReservationLine], kits: Mapping[str, Kit]) -> tuple[Units, ...]:
    """What a cart holds: each kit line as its components, summed per SKU, first seen first."""
    need: dict[str, int] = {}
    for line in cart:
        kit = kits.get(line.sku)
        if kit is None:
            need[line.sku] = need.get(line.sku, 0) + line.quantity
            continue
        for sku, quantity in kit.need(line.quantity).items():
            need[sku] = need.get(sku, 0) + quantity
    return tuple(Units(sku, n) for sku, n in need.items())


@runtime_checkable
class KitStore(Protocol):
    """A reservation store that knows kits, as `RedisReservationStore` and `DurableReservations` do.

    Once `define_kit` has returned, every `reserve` (in any process) that
    names the kit holds its components, and `available` gives the kit's
    units. A kit's components are plain SKUs: a kit is never a component.
    """

    async def define_kit(self, sku: str, components: Sequence[LineInput]) -> Kit:
        """Define (or redefine: the version goes up) kit `sku` as `components` per unit.

        Raises:
            InvalidRequest: bad components, a component that is a kit, or a
                kit SKU that is another kit's component.
        """
        ...

    async def remove_kit(self, sku: str) -> bool:
        """Forget kit `sku` (holds made with it keep their units); False if it was no kit."""
        ...

    async def kits(self) -> Mapping[str, Kit]:
        """Every kit, by SKU."""
        ...


def check_nesting(sku: str, parts: Sequence[ReservationLine], kits: Mapping[str, Kit]) -> None:
    """Refuse a kit made of kits, or a kit SKU already another kit's component."""
    refuse_nesting(
        sku,
        nested=[part.sku for part in parts if part.sku in kits],
        used_by=sum(
            1 for k in kits.values() if k.sku != sku and any(p.sku == sku for p in k.components)
        ),
    )


def refuse_nesting(sku: str, *, nested: Sequence[str], used_by: int) -> None:
    """Raise `InvalidRequest` if kit `sku` has kits (`nested`) as components, or kits use it."""
    if nested:
        raise InvalidRequest(f"kit {sku}: components {list(nested)} are kits, not SKUs")
    if used_by:
        raise InvalidRequest(f"{sku} is a component of {used_by} kit(s); it cannot be a kit")
