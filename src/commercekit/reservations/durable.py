"""`DurableReservations`: Redis holds kept together with their PostgreSQL records.

```python
store = RedisReservationStore(redis, guarded=True)
reservations = DurableReservations(store, ReservationLedger(engine))
await reservations.start()            # restores Redis from the ledger if it is empty
hold = await reservations.reserve([("SKU-1", 2)], ttl=900, owner="user-42")
```

What it guarantees:

- a hold exists only with its record: if the record cannot be written, the
  hold is released before the caller gets `BackendUnavailable`;
- every transition reaches the ledger exactly once (conditional updates);
  a retried call that finds the transition already made records it again
  harmlessly, so retries converge;
- after Redis is flushed or restarted empty, the first call restores stock
  and pending holds from the ledger (guarded scripts refuse to act before),
  and the idempotency keys of every reservation made within the store's
  `idempotency_ttl`: a retry with the key of a confirmed, released or
  expired reservation gets that reservation back, never a second hold;
- `reconcile` finds and repairs what a crash between the two left behind;
- with a store created with ``replicas=``, a hold is acknowledged only once
  a Redis replica has it and its record is written, so a Redis failover
  loses no acknowledged hold; a write the replicas did not confirm
  (`NotReplicated`) is not recorded (the store undoes a refused hold).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from commercekit.errors import (
    BackendUnavailable,
    ConfigurationError,
    HoldExpired,
    InvalidRequest,
    InvalidTransition,
    NotReplicated,
    RedisDataLost,
    ReservationNotFound,
)
from commercekit.reservations import _input
from commercekit.reservations._batch import Coalescer
from commercekit.reservations.journal import StockEntry, StockReason, StockState
from commercekit.reservations.kits import Kit, check_components
from commercekit.reservations.ledger import ReservationLedger
from commercekit.reservations.locations import Channel, check_location
from commercekit.reservations.models import (
    DEFAULT_LOCATION,
    PurchaseLimit,
    Reservation,
    ReservationStatus,
    SoldUnits,
    StockLevel,
)
from commercekit.reservations.redis import RedisReservationStore
from commercekit.reservations.store import LineInput, TTLInput
from commercekit.reservations.sweeper import ExpiryCallback, report_expiry
from commercekit.transient import is_transient

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

    from commercekit.plugins import PluginManager

__all__ = ["DurableReservations", "ReconcileReport"]

logger = logging.getLogger("commercekit.reservations.durable")

T = TypeVar("T")


@contextlib.contextmanager
def _ledger_down(message: str) -> Iterator[None]:
    """Raise a transient failure of the ledger as `BackendUnavailable` (with `message`).

    A `BackendUnavailable` (Redis's, inside a ledger call) passes unchanged;
    an error that is not transient (a bug, a constraint) passes unchanged
    too, so a consumer dead-letters it instead of retrying it forever.
    """
    try:
        yield
    except BackendUnavailable:
        raise
    except Exception as exc:
        if not is_transient(exc):
            raise
        raise BackendUnavailable(f"{message}: {exc}") from exc


def _same_kit(one: Kit | None, other: Kit | None) -> bool:
    """Whether two definitions (or absences) of a kit agree."""
    if one is None or other is None:
        return one is other
    return (one.components, one.version) == (other.components, other.version)


@dataclass
class ReconcileReport:
    """What `DurableReservations.reconcile` found, and repaired."""

    records_added: list[str] = field(default_factory=list)
    """Holds Redis had without a ledger row; their rows were written."""
    amends_recorded: list[str] = field(default_factory=list)
    """PENDING in both, amended in Redis only: the ledger got the new lines."""
    transitions_recorded: list[str] = field(default_factory=list)
    """Reservations the ledger had as PENDING though Redis had settled them."""
    lost_holds: list[str] = field(default_factory=list)
    """PENDING in the ledger, unknown to Redis: recorded as EXPIRED (no units were held)."""
    stock_repaired: dict[str, int] = field(default_factory=dict)
    """Per SKU (``sku@location`` past the default location), the units added to (or
    taken from) Redis's available stock."""
    caps_repaired: dict[str, int] = field(default_factory=dict)
    """Per SKU (``sku@location`` past the default location), the backorder cap written
    back to Redis (which had another, or none)."""
    kits_repaired: list[str] = field(default_factory=list)
    """Kits Redis had otherwise than the ledger (or not at all); the ledger's were written."""
    moves_applied: list[str] = field(default_factory=list)
    """Moves of sold units back on sale the ledger had recorded and Redis had not made
    (or made without the ledger knowing): made, once."""
    journal_repaired: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per SKU (``sku@location`` past the default location), what the stock journal
    lacked to sum to the ledger (units ``added``, ``held``, ``sold``): written, as
    RECONCILE rows. Empty when every change journaled itself, as it does."""

    @property
    def clean(self) -> bool:
        """Whether Redis and the ledger already agreed."""
        return not (
            self.records_added
            or self.amends_recorded
            or self.transitions_recorded
            or self.lost_holds
            or self.stock_repaired
            or self.caps_repaired
            or self.kits_repaired
            or self.moves_applied
            or self.journal_repaired
        )


class DurableReservations:
    """A `ReservationStore` whose holds are recorded in a `ReservationLedger`.

    Args:
        store: a `RedisReservationStore` created with ``guarded=True``.
        ledger: the PostgreSQL (or SQLite) ledger.
        on_expired: reported for a hold that a confirm, release or extend
            found past its deadline and expired (the sweeper reports its own).
        plugins: a `PluginManager` whose reservation hooks are called once
            per reservation and transition: when the ledger records it, so a
            retried or replayed call does not call them twice.
        batch_records: write the records of holds made concurrently in one
            transaction (one multi-row insert) instead of one transaction
            each. Every caller still gets its hold back only once its record
            is committed; if the batch fails, each hold of it is released
            and each caller gets `BackendUnavailable`.
        batch_in_flight: with `batch_records`, at most this many batches
            being written at once; holds made meanwhile wait for the next.
    """

    def __init__(
        self,
        store: RedisReservationStore,
        ledger: ReservationLedger,
        *,
        on_expired: ExpiryCallback | None = None,
        plugins: PluginManager | None = None,
        batch_records: bool = False,
        batch_in_flight: int = 2,
    ) -> None:
        if not store.guarded:
            raise ConfigurationError("DurableReservations needs a store created with guarded=True")
        if batch_in_flight < 1:
            raise ConfigurationError(f"batch_in_flight must be at least 1, got {batch_in_flight}")
        self._batch: Coalescer[Reservation, bool] | None = (
            Coalescer(self._record_batch, in_flight=batch_in_flight) if batch_records else None
        )
        self.store = store
        self.ledger = ledger
        self.on_expired = on_expired
        self.plugins = plugins

    def shard_of(self, sku: str) -> int:
        """See `RedisReservationStore.shard_of`."""
        return self.store.shard_of(sku)

    # ---------------------------------------------------------- hydration
    async def start(self) -> None:
        """Restore Redis from the ledger if it has no data (a new or emptied Redis)."""
        if not await self.store.is_hydrated():
            await self.rehydrate()

    async def rehydrate(self) -> bool:
        """Write the ledger's stock, pending holds and idempotency keys into Redis, once.

        Returns False if another replica restored it first.
        """
        since = dt.datetime.now(dt.UTC) - self.store.idempotency_ttl
        with _ledger_down("ledger unavailable, cannot restore redis"):
            stock, pending, moved = await self.ledger.restore_point()
            settled = await self.ledger.settled_with_keys(since)
            kits = await self.ledger.kits()
            limits = await self.ledger.limits()
            longest = max((limit.window for limit in limits.values()), default=None)
            confirmed = (
                await self.ledger.confirmed_since(dt.datetime.now(dt.UTC) - longest)
                if longest is not None
                else []
            )
        restored = await self.store.restore(
            stock,
            pending,
            marker=str(uuid.uuid4()),
            replayable=settled,
            kits=kits.values(),
            limits=limits.values(),
            confirmed=confirmed,
            moved=moved,
        )
        if restored:
            # An empty ledger restored into an empty Redis is a first start, not news.
            level = logging.WARNING if stock or pending else logging.INFO
            logger.log(
                level,
                "restored redis from the ledger: %d SKUs, %d pending holds",
                len(stock),
                len(pending),
            )
        return restored

    async def _redis(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run a store call; if Redis lost its data, restore it and run the call again."""
        try:
            return await call()
        except RedisDataLost:
            await self.rehydrate()
            return await call()

    async def _record(self, reservation: Reservation) -> None:
        with _ledger_down(
            f"reservation {reservation.id} is {reservation.status.value} in redis but the "
            "ledger could not record it (retrying the call records it)"
        ):
            changed = await self.ledger.record_transition(reservation)
        if changed:
            self._announce(reservation)

    def _announce(self, reservation: Reservation) -> None:
        """Call the plugin hook of the transition the ledger just recorded."""
        if self.plugins is None:
            return
        hooks = {
            ReservationStatus.CONFIRMED: self.plugins.reservation_confirmed,
            ReservationStatus.RELEASED: self.plugins.reservation_released,
            ReservationStatus.EXPIRED: self.plugins.reservation_expired,
        }
        hook = hooks.get(reservation.status)
        if hook is not None:
            hook(reservation)

    # -------------------------------------------------------------- stock
    async def _stock(
        self,
        sku: str,
        location: str,
        change: Callable[[], Awaitable[StockLevel]],
        reason: StockReason = StockReason.RECONCILE,
    ) -> StockLevel:
        sku = _input.check_sku(sku)
        location = check_location(location)
        made: list[str] = []

        async def make(moves: list[tuple[str, list[SoldUnits]]]) -> None:
            # A move recorded and not made in Redis yet (its commit just released
            # this row's lock) is made there first: a return restocked at another
            # location changes both locations' totals, which `change` rewrites.
            for move_id, lines in moves:
                await self._redis(functools.partial(self.store.return_sold, move_id, lines))
                made.append(move_id)

        with _ledger_down("ledger unavailable"):
            level = await self.ledger.change_stock(
                sku, lambda: self._redis(change), location=location, reason=reason, moves=make
            )
        for move_id in made:  # after the commit: SQLite has one writer
            with _ledger_down(f"move {move_id} made in redis; the ledger could not mark it"):
                await self.ledger.mark_applied(move_id)
        return level

    async def set_stock(
        self, sku: str, on_hand: int, *, location: str = DEFAULT_LOCATION
    ) -> StockLevel:
        """See `ReservationStore.set_stock`; the total is recorded in the ledger.

        The change of the units is journaled (`StockReason.SET`), naming the
        actor of `acting_as`; so are `restock`'s and `adjust`'s.
        """
        return await self._stock(
            sku,
            location,
            lambda: self.store.set_stock(sku, on_hand, location=location),
            StockReason.SET,
        )

    async def restock(
        self, sku: str, quantity: int, *, location: str = DEFAULT_LOCATION
    ) -> StockLevel:
        """See `ReservationStore.restock`; the total is recorded in the ledger."""
        return await self._stock(
            sku,
            location,
            lambda: self.store.restock(sku, quantity, location=location),
            StockReason.RESTOCK,
        )

    async def adjust(self, sku: str, delta: int, *, location: str = DEFAULT_LOCATION) -> StockLevel:
        """See `ReservationStore.adjust`; the total is recorded in the ledger."""
        return await self._stock(
            sku,
            location,
            lambda: self.store.adjust(sku, delta, location=location),
            StockReason.ADJUST,
        )

    # ------------------------------------------------- sold units back on sale
    async def return_sold(
        self,
        move_id: str,
        lines: Sequence[SoldUnits],
        *,
        reason: StockReason = StockReason.CANCEL,
        source: StockState = StockState.COMMITTED,
    ) -> bool:
        """Put sold units back on sale (a cancelled order's, a returned parcel's), exactly once.

        The ledger records the move first (each line's units come off
        ``sold``, in one transaction, under `move_id`), then Redis makes it
        (sold -> available). A crash in between leaves the units unsellable,
        never sellable twice: the same call again, or the next `reconcile`,
        makes the Redis half, once. To record a move in a transaction of
        your own (with the order it cancels), use `return_sold_in`, then
        `apply_move` after the commit. The journal moves the units from
        `source` (committed ones: a cancellation; shipped ones: a return)
        to available, for `reason`.

        Returns:
            Whether the move was recorded now (False: it had been, with these lines).

        Raises:
            InvalidRequest: a bad id or line, or the id was recorded with other lines.
            StockConflict: a line gives back more units than are sold there.
        """
        move_id = _input.check_move_id(move_id)
        lines = _input.check_sold_units(lines)
        with _ledger_down(f"ledger unavailable, move {move_id} not recorded"):
            async with self.ledger.engine.begin() as conn:
                recorded = await self.ledger.record_return_in(
                    conn, move_id, lines, reason=reason, source=source
                )
        await self.apply_move(move_id, lines)
        return recorded

    async def return_sold_in(
        self,
        executor: AsyncConnection | AsyncSession,
        move_id: str,
        lines: Sequence[SoldUnits],
        *,
        reason: StockReason = StockReason.CANCEL,
        source: StockState = StockState.COMMITTED,
        reference: str | None = None,
        order_id: str | None = None,
    ) -> bool:
        """Record move `move_id` in the caller's transaction; `apply_move` after its commit.

        The journal names `reference` (the move's id by default) and `order_id`.

        Returns:
            Whether it was recorded now (False: it had been; nothing written).
        """
        return await self.ledger.record_return_in(
            executor,
            _input.check_move_id(move_id),
            _input.check_sold_units(lines),
            reason=reason,
            source=source,
            reference=reference,
            order_id=order_id,
        )

    async def apply_move(self, move_id: str, lines: Sequence[SoldUnits] | None = None) -> bool:
        """Make recorded move `move_id` in Redis, if it is not made yet.

        `lines`, if given, must be the recorded ones (a check that the id
        was not recorded for another move).

        Returns:
            Whether units moved in Redis now.

        Raises:
            InvalidRequest: no move `move_id` is recorded, or with other lines.
        """
        with _ledger_down(f"ledger unavailable, move {move_id} not made"):
            found = await self.ledger.move(move_id)
        if found is None:
            raise InvalidRequest(f"no move {move_id} is recorded")
        recorded, applied = found
        if lines is not None and _input.check_sold_units(lines) != recorded:
            raise InvalidRequest(f"move {move_id} was recorded with other lines")
        if applied:
            return False
        return await self._make_move(move_id, recorded)

    async def apply_moves(self, limit: int = 1000) -> list[str]:
        """Make in Redis the moves the ledger recorded and Redis has not (oldest first).

        Returns:
            Their ids (`reconcile` calls it: a crash between the two halves).
        """
        with _ledger_down("ledger unavailable"):
            unapplied = await self.ledger.unapplied_moves(limit)
        for move_id, lines in unapplied:
            await self._make_move(move_id, lines)
        return [move_id for move_id, _ in unapplied]

    async def _make_move(self, move_id: str, lines: Sequence[SoldUnits]) -> bool:
        moved = await self._redis(lambda: self.store.return_sold(move_id, lines))
        with _ledger_down(f"move {move_id} made in redis; the ledger could not mark it"):
            await self.ledger.mark_applied(move_id)
        return moved

    async def set_backorder(
        self, sku: str, cap: int, *, location: str = DEFAULT_LOCATION
    ) -> StockLevel:
        """See `ReservationStore.set_backorder`; the cap is recorded in the ledger."""
        return await self._stock(
            sku, location, lambda: self.store.set_backorder(sku, cap, location=location)
        )

    async def set_purchase_limit(
        self, sku: str, quantity: int, *, window: dt.timedelta
    ) -> PurchaseLimit | None:
        """See `ReservationStore.set_purchase_limit`; the limit is recorded in the ledger."""
        sku = _input.check_sku(sku)
        amount = _input.check_int(quantity, "quantity", minimum=0)
        window_ms = int(window.total_seconds() * 1000) if isinstance(window, dt.timedelta) else 0
        with _ledger_down("ledger unavailable"):
            return await self.ledger.record_limit(
                sku,
                amount,
                window_ms,
                lambda: self._redis(
                    lambda: self.store.set_purchase_limit(sku, amount, window=window)
                ),
            )

    async def purchase_limit(self, sku: str) -> PurchaseLimit | None:
        """See `ReservationStore.purchase_limit`."""
        return await self._redis(lambda: self.store.purchase_limit(sku))

    async def stock(self, sku: str, *, location: str = DEFAULT_LOCATION) -> StockLevel:
        """See `ReservationStore.stock`."""
        return await self._redis(lambda: self.store.stock(sku, location=location))

    async def stock_by_location(self, sku: str) -> dict[str, StockLevel]:
        """See `ReservationStore.stock_by_location`."""
        return await self._redis(lambda: self.store.stock_by_location(sku))

    async def available(
        self, skus: Iterable[str], *, channel: Channel | None = None
    ) -> dict[str, int]:
        """See `ReservationStore.available`."""
        wanted = list(skus)
        return await self._redis(lambda: self.store.available(wanted, channel=channel))

    # ---------------------------------------------------------------- kits
    async def define_kit(self, sku: str, components: Sequence[LineInput]) -> Kit:
        """See `KitStore.define_kit`; the ledger counts the versions.

        The kit is recorded in the ledger and written to Redis in one step:
        if either fails, neither changes.
        """
        sku = _input.check_sku(sku)
        parts = check_components(sku, components)

        async def write(kit: Kit) -> Kit:
            await self._redis(lambda: self.store.define_kit(sku, parts, version=kit.version))
            return kit  # as the ledger has it (and `kits` reads it)

        with _ledger_down("ledger unavailable"):
            return await self.ledger.save_kit(sku, parts, write)

    async def remove_kit(self, sku: str) -> bool:
        """See `KitStore.remove_kit`: from the ledger and Redis together."""
        sku = _input.check_sku(sku)
        with _ledger_down("ledger unavailable"):
            return await self.ledger.delete_kit(
                sku, lambda: self._redis(lambda: self.store.remove_kit(sku))
            )

    async def kits(self) -> dict[str, Kit]:
        """See `KitStore.kits`: as the ledger has them."""
        with _ledger_down("ledger unavailable"):
            return await self.ledger.kits()

    async def _repair_kit(self, sku: str) -> bool:
        """Write the ledger's kit `sku` (or its absence) to Redis; True if Redis differed."""

        async def fix(recorded: Kit | None) -> bool:
            current = (await self.store.kits()).get(sku)
            if _same_kit(recorded, current):
                return False
            if recorded is None:
                return await self.store.remove_kit(sku)
            await self.store.define_kit(sku, recorded.components, version=recorded.version)
            return True

        return await self.ledger.with_kit(sku, fix)

    # -------------------------------------------------------- reservations
    async def reserve(
        self,
        lines: Sequence[LineInput],
        *,
        ttl: TTLInput,
        owner: str,
        idempotency_key: str | None = None,
        channel: Channel | None = None,
    ) -> Reservation:
        """See `ReservationStore.reserve`: the hold, then its record, or neither.

        In a `channel`, the plugins may choose the order of its locations for
        this cart first (`commercekit_allocation_order`).

        A key whose reservation Redis no longer keeps (past its retention)
        replays it from the ledger.
        """
        if channel is not None and self.plugins is not None:
            channel = self.plugins.allocation_order(_input.check_lines(lines), channel, owner)
        try:
            hold, made = await self._redis(
                lambda: self.store.reserve_or_replay(
                    lines, ttl=ttl, owner=owner, idempotency_key=idempotency_key, channel=channel
                )
            )
        except ReservationNotFound as exc:
            if idempotency_key is None:
                raise
            with _ledger_down("ledger unavailable"):
                found = await self.ledger.get(exc.reservation_id)
            if found is None or found.owner != owner:
                raise
            return found
        try:
            if self._batch is not None:
                created = await self._batch.submit(hold)
            else:
                created = await self.ledger.record_created(hold)
        except Exception as exc:
            if made:  # not a replay (whose hold and record are the first call's): undo it
                await self._undo(hold)
            if not is_transient(exc):
                raise
            released = "; the hold was released" if made else ""
            raise BackendUnavailable(f"ledger unavailable{released}: {exc}") from exc
        if created and self.plugins is not None:
            self.plugins.reservation_created(hold)
        return hold

    async def _record_batch(self, holds: list[Reservation]) -> list[bool]:
        """Record several new holds in one transaction (see `batch_records`)."""
        return await self.ledger.record_created_many(holds)

    async def _undo(self, hold: Reservation) -> None:
        try:
            await self.store.release(hold.id)
        except InvalidTransition:
            pass  # settled meanwhile: its stock went back (or was sold) already
        except NotReplicated:
            # Released on the master; if a failover loses the release, the
            # hold expires at its deadline and the sweeper returns its stock.
            logger.warning("hold %s released after a ledger failure, not yet replicated", hold.id)
        except Exception:
            # The hold stays until its deadline; the sweeper returns the stock then.
            logger.exception("could not release hold %s after a ledger failure", hold.id)

    async def _transition(self, call: Callable[[], Awaitable[Reservation]]) -> Reservation:
        try:
            changed = await self._redis(call)
        except InvalidTransition as exc:
            # Record what Redis decided (again, harmlessly) so retries converge.
            await self._record(exc.reservation)
            if isinstance(exc, HoldExpired):
                await report_expiry(self.on_expired, exc.reservation)
            raise
        await self._record(changed)
        return changed

    async def confirm(self, reservation_id: str) -> Reservation:
        """See `ReservationStore.confirm`."""
        return await self._transition(lambda: self.store.confirm(reservation_id))

    async def release(self, reservation_id: str) -> Reservation:
        """See `ReservationStore.release`."""
        return await self._transition(lambda: self.store.release(reservation_id))

    async def extend(self, reservation_id: str, ttl: TTLInput) -> Reservation:
        """See `ReservationStore.extend`."""
        return await self._transition(lambda: self.store.extend(reservation_id, ttl))

    async def amend(
        self,
        reservation_id: str,
        lines: Sequence[LineInput],
        *,
        idempotency_key: str | None = None,
        channel: Channel | None = None,
    ) -> Reservation:
        """See `ReservationStore.amend`; the new lines are recorded in the ledger.

        If the ledger cannot record them, Redis keeps the amendment and the
        call raises `BackendUnavailable`: a retry (the same cart) records it,
        and so does `reconcile`.
        """
        try:
            amended = await self._redis(
                lambda: self.store.amend(
                    reservation_id, lines, idempotency_key=idempotency_key, channel=channel
                )
            )
        except InvalidTransition as exc:
            await self._record(exc.reservation)
            if isinstance(exc, HoldExpired):
                await report_expiry(self.on_expired, exc.reservation)
            raise
        if amended.status is ReservationStatus.PENDING:
            with _ledger_down(
                f"reservation {amended.id} was amended in redis but the ledger could not "
                "record it (retrying the call records it)"
            ):
                await self.ledger.record_amend(amended)
        return amended

    async def expire_due(self, limit: int = 100) -> list[Reservation]:
        """See `ReservationStore.expire_due`; each expiry is recorded in the ledger.

        An expiry the ledger cannot record now stays expired in Redis;
        `reconcile` records it later.
        """
        expired = await self._redis(lambda: self.store.expire_due(limit))
        for reservation in expired:
            try:
                await self._record(reservation)
            except BackendUnavailable:
                logger.exception("ledger missed the expiry of %s", reservation.id)
        return expired

    async def get(self, reservation_id: str) -> Reservation:
        """See `ReservationStore.get`; falls back to the ledger past Redis's retention."""
        with contextlib.suppress(ReservationNotFound):
            return await self._redis(lambda: self.store.get(reservation_id))
        with _ledger_down("ledger unavailable"):
            found = await self.ledger.get(reservation_id)
        if found is None:
            raise ReservationNotFound(reservation_id)
        return found

    async def journal(
        self,
        *,
        sku: str | None = None,
        location: str | None = None,
        reference: str | None = None,
        order_id: str | None = None,
        reason: StockReason | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> list[StockEntry]:
        """The stock journal's rows, oldest first: see `ReservationLedger.journal`."""
        with _ledger_down("ledger unavailable"):
            return await self.ledger.journal(
                sku=sku,
                location=location,
                reference=reference,
                order_id=order_id,
                reason=reason,
                after=after,
                limit=limit,
            )

    # ----------------------------------------------------------- reconcile
    async def _repair_total(self, sku: str, location: str) -> tuple[int, int | None]:
        """Make Redis's units and backorder cap of `sku` at `location` the ledger's.

        Returns the units added (or taken), and the cap written (None if Redis had it).
        """
        drift, written = 0, None

        async def fix() -> StockLevel:
            nonlocal drift, written
            # read under the row lock
            added, _sold = await self.ledger.totals_of(sku, location=location)
            cap = await self.ledger.backorder_of(sku, location=location)
            level = await self.store.stock(sku, location=location)
            if level.backorder != cap:  # the ledger's cap stands
                level = await self.store.set_backorder(sku, cap, location=location)
                written = cap
            drift = added - (level.available + level.held + level.sold)
            return await self.store.adjust(sku, drift, location=location) if drift else level

        await self._stock(sku, location, fix)
        return drift, written

    async def _amended_only_in_redis(self, recorded: Reservation, hold: Reservation) -> bool:
        """Record `hold`'s lines if the ledger has others; True if it did."""
        if (recorded.lines, recorded.holdings) == (hold.lines, hold.holdings):
            return False
        return await self.ledger.record_amend(hold, reason=StockReason.RECONCILE)

    async def _reconcile_kits(self, report: ReconcileReport) -> None:
        kept, known = await self.ledger.kits(), await self.store.kits()
        for sku in sorted(kept.keys() | known.keys()):
            if not _same_kit(kept.get(sku), known.get(sku)) and await self._repair_kit(sku):
                report.kits_repaired.append(sku)

    async def _reconcile_stock(self, report: ReconcileReport) -> None:
        for sku, location in await self.ledger.location_totals():
            drift, cap = await self._repair_total(sku, location)
            where = sku if location == DEFAULT_LOCATION else f"{sku}@{location}"
            if drift:
                report.stock_repaired[where] = drift
            if cap is not None:
                report.caps_repaired[where] = cap

    async def _reconcile_journal(self, report: ReconcileReport) -> None:
        drift = await self.ledger.journal_drift()
        if drift:
            await self.ledger.repair_journal(drift)
        for (sku, location), off in drift.items():
            report.journal_repaired[
                sku if location == DEFAULT_LOCATION else f"{sku}@{location}"
            ] = off

    async def reconcile(self) -> ReconcileReport:
        """Compare Redis with the ledger and repair what differs.

        Safe while traffic flows: it only records decisions Redis already
        made, and corrects a SKU's total units (which reservations never
        change) under the same row lock as stock changes. Last, it proves
        the stock journal sums to the ledger, per SKU and location (units
        added, held, sold), and journals what it lacked
        (`ReconcileReport.journal_repaired`).
        """
        report = ReconcileReport()
        await self.start()
        in_redis = {r.id: r for r in await self.store.pending()}
        in_ledger = {r.id: r for r in await self.ledger.pending()}

        for rid, hold in in_redis.items():
            recorded = in_ledger.get(rid)
            if recorded is None and await self.ledger.get(rid) is None:
                await self.ledger.record_created(hold, reason=StockReason.RECONCILE)
                report.records_added.append(rid)
            elif recorded is not None and await self._amended_only_in_redis(recorded, hold):
                report.amends_recorded.append(rid)
        for rid, recorded in in_ledger.items():
            if rid in in_redis:
                continue
            try:
                now = await self.store.get(rid)
            except ReservationNotFound:
                lost = recorded.model_copy(
                    update={
                        "status": ReservationStatus.EXPIRED,
                        "updated_at": dt.datetime.now(dt.UTC),
                    }
                )
                if await self.ledger.record_transition(lost, reason=StockReason.RECONCILE):
                    report.lost_holds.append(rid)
                continue
            if now.status.is_terminal and await self.ledger.record_transition(
                now, reason=StockReason.RECONCILE
            ):
                report.transitions_recorded.append(rid)

        await self._reconcile_kits(report)
        report.moves_applied.extend(await self.apply_moves())
        await self._reconcile_stock(report)
        await self._reconcile_journal(report)
        if not report.clean:
            logger.warning("reconcile repaired drift: %s", report)
        return report
