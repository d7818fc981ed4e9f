"""Stock in many places: locations, the channels that sell from them, allocation rules.

A SKU's stock is kept per location (a warehouse, a shop). A `Channel` (a
web shop, a marketplace) sells from an ordered set of locations; what it
can sell of a SKU is the sum over its locations, less each location's
safety stock. Reserving in a channel allocates every line to locations in
the store's one atomic step, by the channel's `strategy` and `split` rule,
and the reservation remembers where each unit came from: a release or an
expiry returns it there, a confirmation sells it there.

```python
from commercekit.reservations import Channel, ChannelLocation, Split, Strategy

web = Channel(
    "web",
    locations=(ChannelLocation("berlin", safety_stock=2), ChannelLocation("hamburg")),
    strategy=Strategy.PRIORITY,  # Berlin first, then Hamburg
    split=Split.LINES,           # a line may take units from both
)
await store.set_stock("SKU-1", 5, location="berlin")
await store.set_stock("SKU-1", 5, location="hamburg")
await store.available(["SKU-1"], channel=web)    # {"SKU-1": 8}: 3 + 5
hold = await store.reserve([("SKU-1", 4)], ttl=900, owner="u-1", channel=web)
hold.allocations  # berlin x 3, hamburg x 1
```

Without a channel, every call works on `DEFAULT_LOCATION` exactly as a
store with one location always has.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import TypeAdapter, ValidationError

from commercekit.errors import InvalidRequest
from commercekit.reservations.models import DEFAULT_LOCATION, LocationName

__all__ = [
    "DEFAULT_LOCATION",
    "Channel",
    "ChannelLocation",
    "Split",
    "Strategy",
    "check_location",
]

MAX_LOCATIONS = 64
"""The most locations one channel may sell from."""

_location = TypeAdapter(LocationName)


def check_location(location: object) -> str:
    """A valid location name, or `InvalidRequest`."""
    try:
        return _location.validate_python(location, strict=True)
    except ValidationError as exc:
        reason = "; ".join(e["msg"] for e in exc.errors())
        raise InvalidRequest(f"invalid location {location!r}: {reason}") from None


class Strategy(StrEnum):
    """Which of a channel's locations a line takes its units from first."""

    PRIORITY = "priority"
    """The channel's order (the nearest, the cheapest to ship from...)."""
    MOST_STOCK = "most_stock"
    """The location with the most units sellable now (ties: the channel's order)."""


class Split(StrEnum):
    """How far a cart may be spread over locations."""

    LINES = "lines"
    """A line may take units from several locations."""
    NONE = "none"
    """Each line comes from one location (lines may differ)."""
    SHIPMENT = "shipment"
    """The whole cart comes from one location: one shipment."""


@dataclass(frozen=True, slots=True)
class ChannelLocation:
    """A location a channel sells from, and the units it keeps back there.

    Attributes:
        name: the location.
        safety_stock: units of every SKU this channel never sells from here
            (kept for the shop floor, or a buffer against miscounts).
    """

    name: str
    safety_stock: int = 0

    def __post_init__(self) -> None:
        check_location(self.name)
        if (
            not isinstance(self.safety_stock, int)
            or isinstance(self.safety_stock, bool)
            or not 0 <= self.safety_stock <= 2**53
        ):
            raise InvalidRequest(
                f"safety_stock must be a whole number >= 0, got {self.safety_stock!r}"
            )


@dataclass(frozen=True, slots=True)
class Channel:
    """Where a sales channel takes its stock from, and how it allocates a cart.

    Attributes:
        name: the channel (for logs and plugins).
        locations: where it sells from, in priority order; names or
            `ChannelLocation` (to keep a safety stock back).
        strategy: which location a line takes from first.
        split: how far a cart may be spread over locations.
    """

    name: str
    locations: tuple[ChannelLocation, ...]
    strategy: Strategy = Strategy.PRIORITY
    split: Split = Split.LINES

    def __init__(
        self,
        name: str,
        locations: Iterable[ChannelLocation | str],
        *,
        strategy: Strategy | str = Strategy.PRIORITY,
        split: Split | str = Split.LINES,
    ) -> None:
        chosen = tuple(
            place if isinstance(place, ChannelLocation) else ChannelLocation(place)
            for place in locations
        )
        names = [place.name for place in chosen]
        if not chosen or len(chosen) > MAX_LOCATIONS:
            raise InvalidRequest(f"a channel sells from 1 to {MAX_LOCATIONS} locations")
        if len(set(names)) != len(names):
            raise InvalidRequest(f"channel {name!r} names a location twice: {names}")
        try:
            strategy, split = Strategy(strategy), Split(split)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "locations", chosen)
        object.__setattr__(self, "strategy", strategy)
        object.__setattr__(self, "split", split)

    @property
    def names(self) -> tuple[str, ...]:
        """The locations' names, in priority order."""
        return tuple(place.name for place in self.locations)

    def ordered(self, names: Iterable[str]) -> Channel:
        """This channel with its locations in the order of `names` (a plugin's choice).

        Every name must be one of the channel's; those left out are not used.
        """
        by_name = {place.name: place for place in self.locations}
        unknown = [name for name in names if name not in by_name]
        if unknown:
            raise InvalidRequest(f"not locations of channel {self.name!r}: {unknown}")
        return Channel(
            self.name,
            [by_name[name] for name in names],
            strategy=Strategy.PRIORITY,
            split=self.split,
        )

    def spec(self) -> dict[str, Any]:
        """The allocation rule as the reserve script reads it."""
        return {
            "locs": [[place.name, place.safety_stock] for place in self.locations],
            "most": self.strategy is Strategy.MOST_STOCK,
            "split": self.split.value,
        }
