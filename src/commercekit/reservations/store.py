"""The `ReservationStore` protocol: what every reservation backend provides."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, runtime_checkable

from commercekit.reservations.locations import Channel
from commercekit.reservations.models import (
    DEFAULT_LOCATION,
    PurchaseLimit,
    Reservation,
    ReservationLine,
    StockLevel,
)

__all__ = ["LineInput", "ReservationStore", "TTLInput"]

LineInput = ReservationLine | tuple[str, int]
"""A cart line: a `ReservationLine` or a ``(sku, quantity)`` pair."""

TTLInput = dt.timedelta | float
"""A time to live: a `timedelta` or seconds."""


@runtime_checkable
class ReservationStore(Protocol):
    """Atomic stock holds.

    Every method is atomic: it happens entirely or not at all, whatever runs
    beside it. Each reservation leaves PENDING exactly once, for CONFIRMED,
    RELEASED or EXPIRED, and its units are returned to available at most
    once. Bad input raises `commercekit.errors.InvalidRequest` before the
    backend is touched; an unreachable backend raises
    `commercekit.errors.BackendUnavailable`.
    """

    async def set_stock(
        self, sku: str, on_hand: int, *, location: str = DEFAULT_LOCATION
    ) -> StockLevel:
        """Make `on_hand` (available + held) units of `sku` exist at `location`; holds are kept.

        Raises:
            StockConflict: `on_hand` is below the units currently held.
        """
        ...

    async def restock(
        self, sku: str, quantity: int, *, location: str = DEFAULT_LOCATION
    ) -> StockLevel:
        """Add `quantity` (> 0) units to the available stock of `sku` at `location`."""
        ...

    async def adjust(self, sku: str, delta: int, *, location: str = DEFAULT_LOCATION) -> StockLevel:
        """Change the available stock of `sku` at `location` by `delta` (shrinkage, corrections).

        Raises:
            StockConflict: available stock would go below zero (below minus
                the backorder cap, with one).
        """
        ...

    async def set_backorder(
        self, sku: str, cap: int, *, location: str = DEFAULT_LOCATION
    ) -> StockLevel:
        """Let up to `cap` (>= 0; 0 stops it) units of `sku` be held beyond the stock at `location`.

        Holds then take units down to ``available == -cap``, never further;
        each allocation says how many of its units are backordered.

        Raises:
            StockConflict: more units than `cap` are owed there already.
        """
        ...

    async def set_purchase_limit(
        self, sku: str, quantity: int, *, window: dt.timedelta
    ) -> PurchaseLimit | None:
        """Let one owner hold or buy at most `quantity` units of `sku` within `window`.

        Checked inside the reserve script, with every hold of the owner made
        within the window (released and expired ones no longer count), so
        concurrent carts cannot pass it. 0 removes the limit (and returns None).
        """
        ...

    async def purchase_limit(self, sku: str) -> PurchaseLimit | None:
        """The purchase limit of `sku`, or None."""
        ...

    async def stock(self, sku: str, *, location: str = DEFAULT_LOCATION) -> StockLevel:
        """The available, held and sold units of `sku` at `location` (zeros if unknown)."""
        ...

    async def stock_by_location(self, sku: str) -> Mapping[str, StockLevel]:
        """The stock of `sku` at every location that has ever had some, by location."""
        ...

    async def available(
        self, skus: Iterable[str], *, channel: Channel | None = None
    ) -> Mapping[str, int]:
        """Units each SKU can sell now (0 for unknown SKUs).

        Without a `channel`, the default location's available units (and
        its backorder room); in a channel, the sum over its locations, less
        each one's safety stock.
        """
        ...

    async def reserve(
        self,
        lines: Sequence[LineInput],
        *,
        ttl: TTLInput,
        owner: str,
        idempotency_key: str | None = None,
        channel: Channel | None = None,
    ) -> Reservation:
        """Hold every line of the cart for `ttl`, or nothing.

        Lines naming the same SKU are summed first. With an `idempotency_key`,
        a retry of the same cart by the same owner returns the reservation
        made the first time, whatever its status now. In a `channel`, each
        line is allocated to the channel's locations by its strategy and
        split rule (`Reservation.allocations`); without one, every unit is
        held at the default location.

        Raises:
            OutOfStock: some lines cannot be held (all are named); nothing was held.
            PurchaseLimitExceeded: the owner would pass a SKU's purchase limit.
            IdempotencyConflict: the key was used by this owner for another cart.
        """
        ...

    async def get(self, reservation_id: str) -> Reservation:
        """The reservation as it is now.

        Raises:
            ReservationNotFound: unknown id, or past retention.
        """
        ...

    async def confirm(self, reservation_id: str) -> Reservation:
        """PENDING -> CONFIRMED: the held units are sold.

        Raises:
            HoldExpired: the deadline had passed; this call expired it.
            InvalidTransition: it was already CONFIRMED, RELEASED or EXPIRED.
            ReservationNotFound: unknown id.
        """
        ...

    async def release(self, reservation_id: str) -> Reservation:
        """PENDING -> RELEASED: the held units are available again (a cancel).

        Raises the same errors as `confirm`.
        """
        ...

    async def extend(self, reservation_id: str, ttl: TTLInput) -> Reservation:
        """Move the deadline of a PENDING reservation to now + `ttl`.

        Raises the same errors as `confirm`.
        """
        ...

    async def amend(
        self,
        reservation_id: str,
        lines: Sequence[LineInput],
        *,
        idempotency_key: str | None = None,
        channel: Channel | None = None,
    ) -> Reservation:
        """Make a PENDING reservation's cart `lines`, keeping the units it holds already.

        One atomic step: a SKU with fewer units gives the difference back
        (to the locations it came from, the units taken last first), a SKU
        with more takes the difference (in `channel`, by its rules), a SKU
        left out gives all of it back; the deadline stays. If anything is
        short, nothing changes. Amending to the cart the reservation has is
        a no-op, so a retry is harmless; with an `idempotency_key`, a retry
        returns the reservation as it is, even after a later amendment.

        Raises:
            OutOfStock: the extra units cannot be held; the reservation is unchanged.
            PurchaseLimitExceeded: the owner would pass a SKU's purchase limit.
            HoldExpired: the deadline had passed; this call expired it.
            InvalidTransition: it was already CONFIRMED, RELEASED or EXPIRED.
            IdempotencyConflict: the key was used for another amendment of it.
            ReservationNotFound: unknown id.
        """
        ...

    async def expire_due(self, limit: int = 100) -> list[Reservation]:
        """Expire up to `limit` holds past their deadline; return those this call expired."""
        ...
