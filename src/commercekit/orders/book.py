"""`OrderBook`: orders of confirmed reservations, shipped or cancelled in parts, once each."""

from __future__ import annotations

import datetime as dt
import inspect
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from pydantic import TypeAdapter, ValidationError

from commercekit.errors import (
    CancellationConflict,
    ConfigurationError,
    InvalidRequest,
    MissingExtraError,
    OrderNotFound,
    OverCancellation,
    OverFulfilment,
    OverReturn,
    OverShipped,
    RefundError,
    ReturnConflict,
    ShipmentConflict,
)
from commercekit.events.catalog import (
    OrderCancelled,
    OrderCreated,
    OrderFulfilled,
    OrderReturned,
    OrderUnits,
    ReturnedUnits,
)
from commercekit.events.envelope import Envelope
from commercekit.orders.audit import OrderAudit, audit_in
from commercekit.orders.models import (
    Cancellation,
    CancellationId,
    CancellationLine,
    Order,
    OrderLine,
    OrderPayment,
    OrderStatus,
    RestockType,
    Return,
    ReturnId,
    ReturnLine,
    Shipment,
    ShipmentId,
    ShipmentLine,
)
from commercekit.payments.amounts import in_units, share, split
from commercekit.payments.models import (
    Payment,
    PaymentStatus,
    RefundAction,
    RefundDecision,
    RefundReason,
)
from commercekit.reservations.journal import StockReason, StockState, move
from commercekit.reservations.models import (
    DEFAULT_LOCATION,
    SKU,
    LocationName,
    Reservation,
    ReservationStatus,
    SoldUnits,
)

if TYPE_CHECKING:
    from commercekit.events.outbox import Outbox
    from commercekit.payments.refunds import RefundService
    from commercekit.reservations.durable import DurableReservations

try:
    from sqlalchemy import func, insert, select, update
    from sqlalchemy.exc import IntegrityError
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

    from commercekit.orders._tables import (
        CancellationRow,
        OrderLineRow,
        OrderRow,
        ReturnRow,
        ShipmentRow,
    )
    from commercekit.reservations.ledger import write_journal
    from commercekit.sql import dialect_of, insert_or_ignore, read_snapshot, utc
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtraError("postgres", __name__) from exc

__all__ = ["OrderBook", "ReturnRequest", "UnitPrices"]

log = logging.getLogger("commercekit.orders")

UnitPrices = Callable[
    [Reservation], Mapping[str, Decimal] | Awaitable[Mapping[str, Decimal] | None] | None
]
"""The list price of one unit of each SKU a reservation holds (sync or async; None: unknown).

The SKUs are those of `Reservation.holdings`: a kit's components, not the
kit. An order splits what its payment paid over its lines in proportion to
these prices (a kit's price over its components in proportion to theirs);
without a price for every SKU, in proportion to the units.
"""

_ORDERS = OrderRow.__table__
_LINES = OrderLineRow.__table__
_SHIPMENTS = ShipmentRow.__table__
_CANCELLATIONS = CancellationRow.__table__
_RETURNS = ReturnRow.__table__

_SHIPMENT_ID: TypeAdapter[str] = TypeAdapter(ShipmentId)
_CANCELLATION_ID: TypeAdapter[str] = TypeAdapter(CancellationId)
_RETURN_ID: TypeAdapter[str] = TypeAdapter(ReturnId)
_SKU: TypeAdapter[str] = TypeAdapter(SKU)
_LOCATION: TypeAdapter[str] = TypeAdapter(LocationName)

ShipmentRequest = tuple[str, int] | tuple[str, int, str]
"""A line to ship or cancel: ``(sku, quantity)``, or ``(sku, quantity, location)`` where
the order holds the SKU at more than one location."""

ReturnRequest = (
    tuple[str, int, RestockType | str]
    | tuple[str, int, RestockType | str, str]
    | tuple[str, int, RestockType | str, str | None, str]
)
"""A line of a return: ``(sku, quantity, restock)``, or ``(sku, quantity, restock, location)``
where the order holds the SKU at more than one location, or ``(sku, quantity, RESELL,
location or None, restock_at)`` to put the units on sale at another location."""

Asked = dict[tuple[RestockType, str | None], dict[tuple[str, str | None], int]]
"""A return's units per (restock type, location to resell at), then per (SKU, location)."""


class _Replayed(Exception):
    """The shipment id was already shipped with these lines: answer that shipment."""

    def __init__(self, made: Shipment) -> None:
        self.made = made


class _Rereturned(Exception):
    """The return id was already used with these lines: answer that return."""

    def __init__(self, made: Return) -> None:
        self.made = made


class _Recancelled(Exception):
    """The cancellation id was already used with these lines: answer that cancellation."""

    def __init__(self, made: Cancellation) -> None:
        self.made = made


def move_id(cancellation_id: str) -> str:
    """The id of the stock move that puts a cancellation's units back on sale."""
    return f"cancel:{cancellation_id}"


def cancellation_refund_key(cancellation_id: str) -> str:
    """The key of the refund of a cancellation's units (`RefundService.request`)."""
    return f"cancel:{cancellation_id}"


def return_move_id(return_id: str) -> str:
    """The id of the stock move that puts a return's resold units back on sale."""
    return f"return:{return_id}"


def return_refund_key(return_id: str) -> str:
    """The key of the refund of a return's units (`RefundService.request`)."""
    return f"return:{return_id}"


def _sold_units(cancellation: Cancellation) -> list[SoldUnits]:
    return [
        SoldUnits(sku=line.sku, location=line.location, quantity=line.quantity)
        for line in cancellation.lines
    ]


def _order_lines(reservation: Reservation) -> list[tuple[str, str, int]]:
    """``(sku, location, units)`` the reservation holds: its allocations, else its lines."""
    units: Counter[tuple[str, str]] = Counter()
    if reservation.allocations:
        for allocation in reservation.allocations:
            units[allocation.sku, allocation.location] += allocation.quantity
    else:
        for line in reservation.lines:
            units[line.sku, DEFAULT_LOCATION] += line.quantity
    return [(sku, location, n) for (sku, location), n in sorted(units.items())]


def _status(lines: Iterable[OrderLine]) -> OrderStatus:
    lines = list(lines)
    shipped = any(line.shipped for line in lines)
    if all(line.committed == 0 for line in lines):
        return OrderStatus.FULFILLED if shipped else OrderStatus.CANCELLED
    return OrderStatus.PARTIALLY_FULFILLED if shipped else OrderStatus.OPEN


def _shipment(row: Any) -> Shipment:
    return Shipment(
        id=row.id,
        order_id=row.order_id,
        lines=tuple(ShipmentLine(sku=s, location=loc, quantity=int(q)) for s, loc, q in row.lines),
        created_at=utc(row.created_at),
    )


def _cancellation(row: Any) -> Cancellation:
    return Cancellation(
        id=row.id,
        order_id=row.order_id,
        lines=tuple(
            CancellationLine(sku=s, location=loc, quantity=int(q)) for s, loc, q in row.lines
        ),
        created_at=utc(row.created_at),
        refund_id=row.refund_id,
        refunded=Decimal(0) if row.refunded is None else in_units(row.refunded, row.currency),
    )


class OrderBook:
    """Orders in PostgreSQL (or SQLite), from payment until every unit has shipped.

    ```python
    book = OrderBook(engine)
    order = await book.open(confirmed)  # the reservation's units, now committed
    await book.ship(order.id, "parcel-1", [("MUG", 1)])  # 1 of 3 now
    await book.ship(order.id, "parcel-2", [("MUG", 2)])  # the rest later: FULFILLED
    ```

    An order's id is its reservation's, so opening it twice (a redelivered
    payment event, a retry) opens it once. A shipment is made once per
    shipment id: the same id with the same lines is answered with the
    shipment it made, with other lines it is refused (`ShipmentConflict`).
    Shipments of one order are serialized (each locks the order's row), so
    concurrent ones never ship more units than the order commits
    (`OverFulfilment`, nothing shipped).

    Units of an order are *committed*: still on hand where they were held,
    no longer available (the reservation store counts them ``sold``); a
    shipment takes them off hand. `committed` sums them per SKU and
    location. A cancellation (`cancel`, with a `stock`) puts committed
    units back on sale where they were held, exactly once per cancellation
    id: in the transaction that records it, the ledger records the move of
    those units from sold to available, and Redis makes it after the commit
    (or, after a crash, on the retry or the ledger's next ``reconcile``).

    Args:
        engine: the database (the ``commercekit_orders``, ``_order_lines``,
            ``_shipments`` and ``_order_cancellations`` tables, from
            ``commercekit.sql.migrate``).
        stock: the durable reservations whose units the orders commit, with
            its ledger in the same database: needed to `cancel`.
        outbox: with one, each change writes its event in its own transaction
            (``order.created``, ``order.fulfilled`` per shipment,
            ``order.cancelled`` per cancellation), exactly once: the event's
            id is the order's, the shipment's or the cancellation's.
        source: the events' CloudEvents ``source``.
        refunds: with one, a cancellation of units an order's payment paid
            for requests their refund in its own transaction, exactly once
            (keyed by the cancellation's id), never more than the payment
            has left to refund.
        prices: the list prices the payment is split over the lines by
            (`UnitPrices`); without them, by units.

    Raises:
        ConfigurationError: `stock`'s ledger or `refunds` is on another database.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        stock: DurableReservations | None = None,
        outbox: Outbox | None = None,
        source: str = "orders",
        refunds: RefundService | None = None,
        prices: UnitPrices | None = None,
    ) -> None:
        if stock is not None and stock.ledger.engine.url != engine.url:
            raise ConfigurationError(
                "the orders and the stock ledger must share one database: a cancellation "
                "records both in one transaction"
            )
        bind = None if refunds is None else refunds.sessions.kw.get("bind")
        if bind is not None and bind.url != engine.url:
            raise ConfigurationError(
                "the orders and the refunds must share one database: a cancellation "
                "records its refund in its own transaction"
            )
        self.engine = engine
        self.stock = stock
        self.outbox = outbox
        self.source = source
        self.refunds = refunds
        self.prices = prices

    # ------------------------------------------------------------------ reads
    async def get(self, order_id: str) -> Order:
        """The order `order_id`.

        Raises:
            OrderNotFound: no order has this id.
        """
        async with self.engine.connect() as conn:
            return await self._load(conn, order_id)

    async def of_owner(self, owner: str, *, limit: int = 50, offset: int = 0) -> list[Order]:
        """An owner's orders, oldest first: at most `limit` of them, after the first `offset`."""
        if not 1 <= limit <= 1000 or offset < 0:
            raise InvalidRequest("limit must be 1 to 1000 and offset at least 0")
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(_ORDERS)
                    .where(_ORDERS.c.owner == owner)
                    .order_by(_ORDERS.c.created_at, _ORDERS.c.id)
                    .limit(limit)
                    .offset(offset)
                )
            ).all()
            lines = await self._lines_of(conn, [row.id for row in rows])  # one query per page
        return [_order(row, lines.get(row.id, [])) for row in rows]

    async def committed(self, sku: str, location: str = DEFAULT_LOCATION) -> int:
        """Units of `sku` at `location` that orders hold, neither shipped nor cancelled."""
        left = OrderLineRow.quantity - OrderLineRow.shipped - OrderLineRow.cancelled
        async with self.engine.connect() as conn:
            total = await conn.scalar(
                select(func.coalesce(func.sum(left), 0))
                .where(OrderLineRow.sku == sku)
                .where(OrderLineRow.location == location)
            )
        return int(total or 0)

    async def shipment(self, shipment_id: str) -> Shipment | None:
        """The shipment made under `shipment_id`, if any."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(_SHIPMENTS).where(_SHIPMENTS.c.id == shipment_id))
            ).first()
        return None if row is None else _shipment(row)

    async def cancellation(self, cancellation_id: str) -> Cancellation | None:
        """The cancellation made under `cancellation_id`, if any."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(_CANCELLATIONS).where(_CANCELLATIONS.c.id == cancellation_id)
                )
            ).first()
        return None if row is None else _cancellation(row)

    # ---------------------------------------------------------------- changes
    async def open(
        self,
        reservation: Reservation,
        *,
        payment: Payment | None = None,
        paid: Decimal | None = None,
        now: dt.datetime | None = None,
    ) -> Order:
        """The order of a confirmed reservation: its units committed, per SKU and location.

        With `payment` (the one that confirmed it), the order records it
        and splits what it paid for the goods (`paid`, the whole payment by
        default) over its lines (see `UnitPrices`): a cancellation refunds
        the cancelled units' part. Opening it again returns the order as it
        is (shipped units and all).

        Raises:
            InvalidRequest: the reservation is not CONFIRMED, or `paid` is
                not within 0 and the payment's amount.
        """
        async with self.engine.begin() as conn:
            await self.open_in(conn, reservation, payment=payment, paid=paid, now=now)
            return await self._load(conn, reservation.id)

    async def open_in(
        self,
        executor: AsyncConnection | AsyncSession,
        reservation: Reservation,
        *,
        payment: Payment | None = None,
        paid: Decimal | None = None,
        now: dt.datetime | None = None,
    ) -> bool:
        """`open`, inside a transaction of the caller's on the same database.

        A payment's settlement opens the order in the transaction that
        records its outcome: the order exists exactly when the payment was
        settled as confirmed, whatever crashes in between. It does not read
        the order back (that transaction holds the payment's row meanwhile).

        Returns:
            Whether the order was opened now (False: it was open already).
        """
        if reservation.status is not ReservationStatus.CONFIRMED:
            raise InvalidRequest(
                f"reservation {reservation.id} is {reservation.status}: only a CONFIRMED "
                "reservation becomes an order"
            )
        if payment is not None:
            paid = payment.amount if paid is None else paid
            if not 0 <= paid <= payment.amount:
                raise InvalidRequest(
                    f"an order is paid 0 to its payment's {payment.amount}, not {paid}"
                )
        at = now or dt.datetime.now(dt.UTC)
        values = {
            "id": reservation.id,
            "owner": reservation.owner,
            "status": OrderStatus.OPEN.value,
            "version": 1,
            "created_at": at,
            "updated_at": at,
            "payment_id": None if payment is None else payment.id,
            "payment_amount": None if payment is None else payment.amount,
            "currency": None if payment is None else payment.currency,
        }
        made = await executor.execute(
            insert_or_ignore(dialect_of(executor), OrderRow, values).returning(OrderRow.id)
        )
        if made.first() is None:
            return False
        lines = _order_lines(reservation)
        amounts: list[Decimal | None] = [None] * len(lines)
        if payment is not None and paid is not None:
            weights = await self._weights(reservation, lines)
            amounts = list(split(paid, weights, payment.currency))
        await executor.execute(
            insert(OrderLineRow),
            [
                {"order_id": reservation.id, "sku": sku, "location": location,
                 "quantity": units, "shipped": 0, "amount": amount}
                for (sku, location, units), amount in zip(lines, amounts, strict=True)
            ],
        )  # fmt: skip
        await self._announce(
            executor,
            OrderCreated(
                order_id=reservation.id,
                owner=reservation.owner,
                lines=tuple(OrderUnits(sku=s, location=loc, quantity=n) for s, loc, n in lines),
                status=OrderStatus.OPEN.value,
            ),
            reservation.id,
        )
        return True

    async def _weights(
        self, reservation: Reservation, lines: Sequence[tuple[str, str, int]]
    ) -> list[Decimal | int]:
        """What each line weighs in the split of the payment: list price x units, else units."""
        prices: Mapping[str, Decimal] | None = None
        if self.prices is not None:
            found = self.prices(reservation)
            prices = await found if inspect.isawaitable(found) else found
        weights: list[Decimal | int] = []
        for sku, _, units in lines:
            price = None if prices is None else prices.get(sku)
            if price is None or price < 0:  # unknown (0 is a price: a free line)
                return [units for _, _, units in lines]
            weights.append(price * units)
        return weights

    async def ship(
        self,
        order_id: str,
        shipment_id: str,
        lines: Iterable[ShipmentRequest],
        *,
        now: dt.datetime | None = None,
    ) -> Shipment:
        """Ship units of `order_id` under `shipment_id`, exactly once.

        Each line is ``(sku, quantity)``, or ``(sku, quantity, location)``
        where the order holds the SKU at more than one location; lines of
        the same SKU and location add up.

        Returns:
            The shipment: made now, or made before under this id with these lines.

        Raises:
            OrderNotFound: no order has this id.
            OverFulfilment: some line asks for more than the order commits there.
            ShipmentConflict: the id was used for another shipment.
            InvalidRequest: an empty shipment, a bad id, SKU, location or
                quantity, or a SKU held at several locations without one named.
        """
        try:
            shipment_id = _SHIPMENT_ID.validate_python(shipment_id)
        except ValidationError as exc:
            raise InvalidRequest(f"invalid shipment id {shipment_id!r}") from exc
        asked = _requested(lines)
        at = now or dt.datetime.now(dt.UTC)
        try:
            async with self.engine.begin() as conn:
                return await self._ship(conn, order_id, shipment_id, asked, at)
        except _Replayed as replayed:
            return replayed.made
        except IntegrityError:
            # Another order's shipment took this id at the same moment.
            made = await self.shipment(shipment_id)
            if made is None:  # pragma: no cover - the key that collided is gone again
                raise
            if made.order_id == order_id and made.lines == await self._resolved(order_id, asked):
                return made
            raise ShipmentConflict(shipment_id, made.order_id) from None

    async def cancel(
        self,
        order_id: str,
        cancellation_id: str,
        lines: Iterable[ShipmentRequest] | None = None,
        *,
        now: dt.datetime | None = None,
    ) -> Cancellation:
        """Cancel units of `order_id` not shipped yet, exactly once: back on sale where held.

        `lines` are ``(sku, quantity)`` or ``(sku, quantity, location)``, as
        for `ship`; None cancels every unit the order still commits. The
        order becomes CANCELLED when none of its units ever shipped, else
        FULFILLED once nothing is left to ship.

        The same id again is answered with the cancellation it made (with
        these lines, or with None), and makes sure its units are back on
        sale: a retry after a crash between the commit and Redis finishes it.

        Returns:
            The cancellation: made now, or made before under this id.

        Raises:
            ConfigurationError: the book has no `stock` to put units back into.
            OrderNotFound: no order has this id.
            OverCancellation: some line asks for more than the order commits
                there, or nothing is left to cancel.
            CancellationConflict: the id was used for another cancellation.
            InvalidRequest: an empty cancellation, a bad id, SKU, location or
                quantity, or a SKU held at several locations without one named.
        """
        stock = self.stock
        if stock is None:
            raise ConfigurationError("OrderBook(stock=...) is needed to cancel: units go back")
        try:
            cancellation_id = _CANCELLATION_ID.validate_python(cancellation_id)
        except ValidationError as exc:
            raise InvalidRequest(f"invalid cancellation id {cancellation_id!r}") from exc
        asked = None if lines is None else _requested(lines)
        at = now or dt.datetime.now(dt.UTC)
        try:
            async with self.engine.begin() as conn:
                made = await self._cancel(
                    conn, stock, order_id, cancellation_id, asked=asked, at=at
                )
        except _Recancelled as replayed:
            made = replayed.made
        except IntegrityError:
            # Another order's cancellation took this id at the same moment.
            found = await self.cancellation(cancellation_id)
            if found is None:  # pragma: no cover - the key that collided is gone again
                raise
            if found.order_id != order_id or (
                asked is not None and _lines_of(found) != await self._resolved(order_id, asked)
            ):
                raise CancellationConflict(cancellation_id, found.order_id) from None
            made = found
        await stock.apply_move(move_id(made.id), _sold_units(made))
        await self._complete(made.refund_id)
        return made

    async def receive_return(
        self,
        order_id: str,
        return_id: str,
        lines: Iterable[ReturnRequest],
        *,
        now: dt.datetime | None = None,
    ) -> Return:
        """Receive shipped units of `order_id` back, exactly once: restocked, and refunded.

        `lines` are ``(sku, quantity, restock)`` or ``(sku, quantity,
        restock, location)`` (the location they shipped from, where the order
        holds the SKU at more than one). Each restock type says what becomes
        of the units (`RestockType`): RESELL puts them back on sale there (or,
        with a fifth element, ``(sku, quantity, RESELL, location or None,
        restock_at)``, at location `restock_at`: a return received at another
        warehouse; their units move from one location's stock to the other's)
        (from the ledger's sold units, as a cancellation does: the move is
        recorded in the return's transaction, and Redis makes it after the
        commit, on the retry or at the next ``reconcile``); DAMAGED counts
        them on hand there, never to be sold (`damaged`); NONE writes them
        off. With `refunds`, what the units were paid is refunded, as for a
        cancellation (keyed by `return_refund_key`).

        The same id again is answered with the return it made (with the same
        lines), and makes sure its resold units are on sale.

        Raises:
            ConfigurationError: a RESELL line, and the book has no `stock`.
            OrderNotFound: no order has this id.
            OverReturn: some line asks for more units than were shipped from
                there and not returned yet; nothing is received.
            ReturnConflict: the id was used for another return.
            InvalidRequest: an empty return, a bad id, SKU, location,
                quantity or restock type, or a SKU held at several locations
                without one named.
        """
        try:
            return_id = _RETURN_ID.validate_python(return_id)
        except ValidationError as exc:
            raise InvalidRequest(f"invalid return id {return_id!r}") from exc
        asked = _returns_requested(lines)
        if any(restock is RestockType.RESELL for restock, _ in asked) and self.stock is None:
            raise ConfigurationError("OrderBook(stock=...) is needed to resell returned units")
        at = now or dt.datetime.now(dt.UTC)
        try:
            async with self.engine.begin() as conn:
                made = await self._receive(conn, order_id, return_id, asked, at)
        except _Rereturned as replayed:
            made = replayed.made
        except IntegrityError:
            # Another order's return took this id at the same moment.
            found = await self.returned(return_id)
            if found is None:  # pragma: no cover - the key that collided is gone again
                raise
            if found.order_id != order_id or found.lines != _return_lines(
                await self.get(order_id), asked
            ):
                raise ReturnConflict(return_id, found.order_id) from None
            made = found
        resold = _resold(made)
        if resold and self.stock is not None:
            await self.stock.apply_move(return_move_id(made.id), resold)
        await self._complete(made.refund_id)
        return made

    async def returned(self, return_id: str) -> Return | None:
        """The return received under `return_id`, if any."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(_RETURNS).where(_RETURNS.c.id == return_id))).first()
        return None if row is None else _return(row)

    async def sold(self) -> dict[tuple[str, str], int]:
        """``{(sku, location): units}`` the orders took off sale and did not put back.

        Committed, shipped, damaged and written-off units; not cancelled ones,
        nor those returned for resale. Once every confirmed reservation is an
        order (and none is between its confirmation and its order), this is
        what the stock ledger counts sold, per SKU and location
        (`ReservationLedger.location_totals`): compare the two to prove it.
        """
        left = OrderLineRow.quantity - OrderLineRow.cancelled - OrderLineRow.resold
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(OrderLineRow.sku, OrderLineRow.location, func.sum(left)).group_by(
                    OrderLineRow.sku, OrderLineRow.location
                )
            )
            return {(sku, location): int(units) for sku, location, units in rows}

    async def damaged(self, sku: str, location: str = DEFAULT_LOCATION) -> int:
        """Units of `sku` returned damaged to `location`: on hand there, never to be sold."""
        async with self.engine.connect() as conn:
            total = await conn.scalar(
                select(func.coalesce(func.sum(OrderLineRow.damaged), 0))
                .where(OrderLineRow.sku == sku)
                .where(OrderLineRow.location == location)
            )
        return int(total or 0)

    async def audit(self) -> OrderAudit:
        """Check the orders against the stock journal and their payments, in one snapshot.

        Per SKU and location, the journal's committed, shipped, damaged and
        written-off units must be the orders' (confirmed reservations no
        order has opened yet count as committed); per line, no counter may
        exceed what it counts from; per order, the refunds (all of its
        payment's, with ``refunds=``) must not exceed what it paid. Run it
        after ``DurableReservations.reconcile``, which proves the journal
        sums to the ledger: together they prove the invariants of the
        orders' stock. Nothing is repaired; see `OrderAudit`.
        """
        async with self.engine.connect() as conn:
            await read_snapshot(conn)
            report = await audit_in(conn, refunds=self.refunds is not None)
        if not report.clean:
            log.warning("the orders disagree with the stock journal or payments: %s", report)
        return report

    # ---------------------------------------------------------------- helpers
    async def _cancel(
        self,
        conn: AsyncConnection,
        stock: DurableReservations,
        order_id: str,
        cancellation_id: str,
        *,
        asked: dict[tuple[str, str | None], int] | None,
        at: dt.datetime,
    ) -> Cancellation:
        order = await self._locked(conn, order_id, at)
        existing = (
            await conn.execute(select(_CANCELLATIONS).where(_CANCELLATIONS.c.id == cancellation_id))
        ).first()
        if existing is not None:
            made = _cancellation(existing)
            if made.order_id == order_id and (
                asked is None or _lines_of(made) == _resolve(order, asked)
            ):
                raise _Recancelled(made)  # and the version bump is rolled back
            raise CancellationConflict(cancellation_id, made.order_id)
        if asked is None:
            wanted = tuple(
                ShipmentLine(sku=line.sku, location=line.location, quantity=line.committed)
                for line in order.lines
                if line.committed
            )
            if not wanted:
                raise OverCancellation(order_id, ())
        else:
            wanted = _resolve(order, asked)
        over = _over(order, wanted)
        if over:
            raise OverCancellation(order_id, over)
        after = await self._take(conn, order, wanted, "cancelled")
        refund_id, refunded = await self._refund_in(
            conn, order, wanted, "cancellation", cancellation_id
        )
        made = Cancellation(
            id=cancellation_id,
            order_id=order_id,
            lines=tuple(CancellationLine(**line.model_dump()) for line in wanted),
            created_at=at,
            refund_id=refund_id,
            refunded=refunded,
        )
        await conn.execute(
            insert(CancellationRow).values(
                id=cancellation_id,
                order_id=order_id,
                lines=[[line.sku, line.location, line.quantity] for line in made.lines],
                created_at=at,
                **_refund_values(order, refund_id, refunded),
            )
        )
        await stock.return_sold_in(
            conn,
            move_id(cancellation_id),
            _sold_units(made),
            reference=cancellation_id,
            order_id=order_id,
        )
        await self._announce(
            conn,
            OrderCancelled(
                order_id=order_id,
                owner=order.owner,
                lines=_units(made.lines),
                status=after.value,
                cancellation_id=cancellation_id,
            ),
            cancellation_id,
        )
        return made

    async def _receive(
        self,
        conn: AsyncConnection,
        order_id: str,
        return_id: str,
        asked: Asked,
        at: dt.datetime,
    ) -> Return:
        order = await self._locked(conn, order_id, at)
        lines = _return_lines(order, asked)
        existing = (await conn.execute(select(_RETURNS).where(_RETURNS.c.id == return_id))).first()
        if existing is not None:
            made = _return(existing)
            if made.order_id == order_id and made.lines == lines:
                raise _Rereturned(made)  # and the version bump is rolled back
            raise ReturnConflict(return_id, made.order_id)
        units: Counter[tuple[str, str]] = Counter()
        for line in lines:
            units[line.sku, line.location] += line.quantity
        wanted = tuple(
            ShipmentLine(sku=sku, location=location, quantity=quantity)
            for (sku, location), quantity in sorted(units.items())
        )
        over = _over(order, wanted, lambda line: line.returnable)
        if over:
            raise OverReturn(order_id, over)
        await self._take(conn, order, wanted, "returned")
        # Of the returned units, those kept apart and those back on sale (status unchanged).
        damaged = [line for line in lines if line.restock is RestockType.DAMAGED]
        resold = [line for line in lines if line.restock is RestockType.RESELL]
        written_off = [line for line in lines if line.restock is RestockType.NONE]
        await self._count(conn, order_id, damaged, "damaged")
        await self._count(conn, order_id, resold, "resold")
        refund_id, refunded = await self._refund_in(conn, order, wanted, "return", return_id)
        made = Return(
            id=return_id,
            order_id=order_id,
            lines=lines,
            created_at=at,
            refund_id=refund_id,
            refunded=refunded,
        )
        await conn.execute(
            insert(ReturnRow).values(
                id=return_id,
                order_id=order_id,
                lines=[_return_values(ln) for ln in lines],
                created_at=at,
                **_refund_values(order, refund_id, refunded),
            )
        )
        moved = _resold(made)
        if moved:
            assert self.stock is not None  # receive_return checked it
            await self.stock.return_sold_in(
                conn,
                return_move_id(return_id),
                moved,
                reason=StockReason.RETURN,
                source=StockState.SHIPPED,
                reference=return_id,
                order_id=order_id,
            )
        for kept, target in ((damaged, StockState.DAMAGED), (written_off, StockState.WRITTEN_OFF)):
            await _journal(conn, kept, (StockState.SHIPPED, target), StockReason.RETURN,
                           reference=return_id, order_id=order_id, at=at)  # fmt: skip
        await self._announce(
            conn,
            OrderReturned(
                order_id=order_id,
                owner=order.owner,
                lines=tuple(
                    ReturnedUnits(
                        sku=ln.sku,
                        location=ln.location,
                        quantity=ln.quantity,
                        restock=ln.restock.value,
                        restock_at=ln.restock_at,
                    )
                    for ln in lines
                ),
                status=order.status.value,
                return_id=return_id,
            ),
            return_id,
        )
        return made

    async def _complete(self, refund_id: str | None) -> None:
        """Make a refund requested by a change, after its commit, if this book has a processor."""
        if refund_id is None or self.refunds is None or self.refunds.processor is None:
            return
        try:
            await self.refunds.complete(refund_id)
        except RefundError:
            log.warning("refund %s left REQUESTED; retry_pending completes it", refund_id)

    async def _refund_in(
        self,
        conn: AsyncConnection,
        order: Order,
        wanted: Iterable[ShipmentLine],
        change: Literal["cancellation", "return"],
        change_id: str,
    ) -> tuple[str | None, Decimal]:
        """Request the refund of what `wanted` units were paid: (its id, its amount).

        Each line gives back those units' share of its amount, taken after
        the units refunded before (`share`): refunding a line unit by unit
        gives back exactly what it was paid. What the payment has left to
        refund caps it (another refund of the payment may have come first),
        read under the payment's total lock, so no refund made meanwhile can
        make this one fail. The lines count the units refunded.
        """
        payment = order.payment
        if self.refunds is None or payment is None:
            return None, Decimal(0)
        amount = Decimal(0)
        paid_for = []
        for want in wanted:
            line = order.line(want.sku, want.location)
            if line is None or line.amount is None:
                continue
            before, after = line.refunded, line.refunded + want.quantity
            amount += share(line.amount, after, of=line.quantity, currency=payment.currency)
            amount -= share(line.amount, before, of=line.quantity, currency=payment.currency)
            paid_for.append(want)
        await self._count(conn, order.id, paid_for, "refunded")
        paying = Payment(
            id=payment.id,
            reservation_id=order.id,
            user_id=order.owner,
            amount=payment.amount,
            currency=payment.currency,
            status=PaymentStatus.SUCCEEDED,
        )
        amount = min(amount, await self.refunds.refundable_in(conn, paying, lock=True))
        if amount <= 0:
            return None, Decimal(0)
        cancelled = change == "cancellation"
        decision = RefundDecision(
            action=RefundAction.REFUND_LINES,
            reason=RefundReason.ORDER_CANCELLED if cancelled else RefundReason.ORDER_RETURNED,
            text=f"order {order.id}: {change} {change_id}",
        )
        event = OrderCancelled if cancelled else OrderReturned
        refund, _ = await self.refunds.request(
            conn,
            paying,
            amount=amount,
            decision=decision,
            key=(cancellation_refund_key if cancelled else return_refund_key)(change_id),
            correlation_id=f"{event.event_type}:{change_id}",
        )
        return refund.id, in_units(refund.amount, payment.currency)

    async def _locked(self, conn: AsyncConnection, order_id: str, at: dt.datetime) -> Order:
        """The order, its row locked (its version bumped) before anything is read."""
        # Bumping the version takes the order's row on PostgreSQL and the write
        # lock on SQLite: changes of one order are serialized.
        bumped = await conn.execute(
            update(OrderRow)
            .where(OrderRow.id == order_id)
            .values(version=OrderRow.version + 1, updated_at=at)
        )
        if bumped.rowcount == 0:
            raise OrderNotFound(order_id)
        return await self._load(conn, order_id)

    async def _take(
        self,
        conn: AsyncConnection,
        order: Order,
        wanted: Iterable[ShipmentLine | ReturnLine],
        taken: Literal["shipped", "cancelled", "returned"],
    ) -> OrderStatus:
        """Count `wanted` units `taken` (off the committed ones) and write the status after."""
        units = await self._count(conn, order.id, wanted, taken)
        after = [
            line.model_copy(
                update={taken: getattr(line, taken) + units.get((line.sku, line.location), 0)}
            )
            for line in order.lines
        ]
        status = _status(after)
        await conn.execute(
            update(OrderRow).where(OrderRow.id == order.id).values(status=status.value)
        )
        return status

    async def _count(
        self,
        conn: AsyncConnection,
        order_id: str,
        wanted: Iterable[ShipmentLine | ReturnLine],
        counter: Literal["shipped", "cancelled", "returned", "damaged", "resold", "refunded"],
    ) -> dict[tuple[str, str], int]:
        """Add `wanted` units to each line's `counter`; the units by SKU and location."""
        units: Counter[tuple[str, str]] = Counter()
        for line in wanted:
            units[line.sku, line.location] += line.quantity
        column = getattr(OrderLineRow, counter)
        for (sku, location), quantity in units.items():
            await conn.execute(
                update(OrderLineRow)
                .where(OrderLineRow.order_id == order_id)
                .where(OrderLineRow.sku == sku)
                .where(OrderLineRow.location == location)
                .values({counter: column + quantity})
            )
        return dict(units)

    async def _announce(
        self,
        executor: AsyncConnection | AsyncSession,
        event: OrderCreated | OrderFulfilled | OrderCancelled | OrderReturned,
        of: str,
    ) -> None:
        """Write `event` to the outbox, if any, in `executor`'s transaction: once per `of`."""
        if self.outbox is not None:
            envelope = Envelope.wrap(event, source=self.source, id=f"{event.event_type}:{of}")
            await self.outbox.add(executor, envelope)

    async def _ship(
        self,
        conn: AsyncConnection,
        order_id: str,
        shipment_id: str,
        asked: dict[tuple[str, str | None], int],
        at: dt.datetime,
    ) -> Shipment:
        order = await self._locked(conn, order_id, at)
        wanted = _resolve(order, asked)
        existing = (
            await conn.execute(select(_SHIPMENTS).where(_SHIPMENTS.c.id == shipment_id))
        ).first()
        if existing is not None:
            made = _shipment(existing)
            if made.order_id == order_id and made.lines == wanted:
                raise _Replayed(made)  # and the version bump is rolled back
            raise ShipmentConflict(shipment_id, made.order_id)
        over = _over(order, wanted)
        if over:
            raise OverFulfilment(order_id, over)
        after = await self._take(conn, order, wanted, "shipped")
        await _journal(conn, wanted, (StockState.COMMITTED, StockState.SHIPPED),
                       StockReason.SHIP, reference=shipment_id, order_id=order_id,
                       at=at)  # fmt: skip
        await conn.execute(
            insert(ShipmentRow).values(
                id=shipment_id,
                order_id=order_id,
                lines=[[line.sku, line.location, line.quantity] for line in wanted],
                created_at=at,
            )
        )
        await self._announce(
            conn,
            OrderFulfilled(
                order_id=order_id,
                owner=order.owner,
                lines=_units(wanted),
                status=after.value,
                shipment_id=shipment_id,
            ),
            shipment_id,
        )
        return Shipment(id=shipment_id, order_id=order_id, lines=wanted, created_at=at)

    async def _resolved(
        self, order_id: str, asked: dict[tuple[str, str | None], int]
    ) -> tuple[ShipmentLine, ...]:
        return _resolve(await self.get(order_id), asked)

    async def _load(self, conn: AsyncConnection | AsyncSession, order_id: str) -> Order:
        # Tables, not entities: plain rows from a connection and a session alike.
        row = (await conn.execute(select(_ORDERS).where(_ORDERS.c.id == order_id))).first()
        if row is None:
            raise OrderNotFound(order_id)
        return _order(row, (await self._lines_of(conn, [order_id])).get(order_id, []))

    async def _lines_of(
        self, conn: AsyncConnection | AsyncSession, order_ids: Sequence[str]
    ) -> dict[str, list[Any]]:
        """The line rows of these orders, by order id, each order's by SKU and location."""
        found: dict[str, list[Any]] = {}
        if order_ids:
            rows = await conn.execute(
                select(_LINES)
                .where(_LINES.c.order_id.in_(order_ids))
                .order_by(_LINES.c.order_id, _LINES.c.sku, _LINES.c.location)
            )
            for line in rows:
                found.setdefault(line.order_id, []).append(line)
        return found


def _order(row: Any, lines: Iterable[Any]) -> Order:
    currency = row.currency or "XXX"  # (no payment: no amounts to write)
    return Order(
        id=row.id,
        owner=row.owner,
        status=OrderStatus(row.status),
        lines=tuple(
            OrderLine(
                sku=line.sku,
                location=line.location,
                quantity=int(line.quantity),
                shipped=int(line.shipped),
                cancelled=int(line.cancelled),
                returned=int(line.returned),
                damaged=int(line.damaged),
                resold=int(line.resold),
                refunded=int(line.refunded),
                amount=None if line.amount is None else in_units(line.amount, currency),
            )
            for line in lines
        ),
        created_at=utc(row.created_at),
        updated_at=utc(row.updated_at),
        payment=None
        if row.payment_id is None
        else OrderPayment(
            id=row.payment_id,
            amount=in_units(row.payment_amount, currency),
            currency=row.currency,
        ),
    )


async def _journal(
    conn: AsyncConnection,
    lines: Iterable[ShipmentLine | ReturnLine],
    route: tuple[StockState, StockState],
    reason: StockReason,
    *,
    reference: str,
    order_id: str,
    at: dt.datetime,
) -> None:
    """Journal a change of an order's sold units that puts none back on sale."""
    await write_journal(
        conn,
        [
            move(line.sku, line.location, line.quantity, route, reason,
                         reference=reference, order_id=order_id, at=at)
            for line in lines
        ],
    )  # fmt: skip


def _requested(lines: Iterable[ShipmentRequest]) -> dict[tuple[str, str | None], int]:
    """The asked units per (SKU, location or None), checked and summed."""
    asked: Counter[tuple[str, str | None]] = Counter()
    for entry in lines:
        if not isinstance(entry, Sequence) or len(entry) not in (2, 3):
            raise InvalidRequest(f"a shipment line is (sku, quantity[, location]), not {entry!r}")
        sku, quantity = entry[0], entry[1]
        location = entry[2] if len(entry) == 3 else None
        try:
            _SKU.validate_python(sku)
            if location is not None:
                _LOCATION.validate_python(location)
        except ValidationError as exc:
            raise InvalidRequest(f"invalid shipment line {entry!r}") from exc
        if type(quantity) is not int or not 0 < quantity <= 1_000_000_000:
            raise InvalidRequest(f"a shipment line ships 1 or more units, not {quantity!r}")
        asked[sku, location] += quantity
    if not asked:
        raise InvalidRequest("a shipment ships at least one line")
    return dict(asked)


def _resolve(order: Order, asked: dict[tuple[str, str | None], int]) -> tuple[ShipmentLine, ...]:
    """The asked lines with their locations: a SKU the order holds at one place ships from it."""
    units: Counter[tuple[str, str]] = Counter()
    for (sku, named), quantity in asked.items():
        location = named
        if location is None:
            places = [line.location for line in order.lines if line.sku == sku]
            if len(places) > 1:
                raise InvalidRequest(
                    f"order {order.id} holds {sku} at {', '.join(places)}: name the location"
                )
            location = places[0] if places else DEFAULT_LOCATION
        units[sku, location] += quantity
    return tuple(
        ShipmentLine(sku=sku, location=location, quantity=quantity)
        for (sku, location), quantity in sorted(units.items())
    )


def _over(
    order: Order,
    wanted: Iterable[ShipmentLine],
    left: Callable[[OrderLine], int] = lambda line: line.committed,
) -> tuple[OverShipped, ...]:
    """The lines asking for more units than the order has `left` there (committed ones)."""
    return tuple(
        OverShipped(want.sku, want.location, committed=held, requested=want.quantity)
        for want in wanted
        if want.quantity
        > (held := 0 if (line := order.line(want.sku, want.location)) is None else left(line))
    )


def _units(lines: Iterable[ShipmentLine | CancellationLine]) -> tuple[OrderUnits, ...]:
    return tuple(OrderUnits(sku=ln.sku, location=ln.location, quantity=ln.quantity) for ln in lines)


def _lines_of(cancellation: Cancellation) -> tuple[ShipmentLine, ...]:
    """A cancellation's lines as `_resolve` gives them, to compare a replay with."""
    return tuple(ShipmentLine(**line.model_dump()) for line in cancellation.lines)


def _returns_requested(lines: Iterable[ReturnRequest]) -> Asked:
    """The asked units per (restock type, location to resell at), then per (SKU, location).

    Checked and summed.
    """
    by_type: dict[tuple[RestockType, str | None], list[ShipmentRequest]] = {}
    for entry in lines:
        if not isinstance(entry, Sequence) or len(entry) not in (3, 4, 5):
            raise InvalidRequest(
                f"a return line is (sku, quantity, restock[, location[, restock_at]]), "
                f"not {entry!r}"
            )
        try:
            restock = RestockType(entry[2])
        except ValueError:
            raise InvalidRequest(
                f"a return line's restock is RESELL, DAMAGED or NONE, not {entry[2]!r}"
            ) from None
        elsewhere = None
        if len(entry) == 5:
            if restock is not RestockType.RESELL:
                raise InvalidRequest(f"only RESELL units are restocked at a location: {entry!r}")
            try:
                elsewhere = _LOCATION.validate_python(entry[4])
            except ValidationError:
                raise InvalidRequest(f"invalid location to restock at {entry[4]!r}") from None
        shipped_from = entry[3] if len(entry) > 3 else None
        line: ShipmentRequest = (
            (entry[0], entry[1]) if shipped_from is None else (entry[0], entry[1], shipped_from)
        )
        by_type.setdefault((restock, elsewhere), []).append(line)
    if not by_type:
        raise InvalidRequest("a return receives at least one line")
    return {kind: _requested(found) for kind, found in by_type.items()}


def _return_lines(order: Order, asked: Asked) -> tuple[ReturnLine, ...]:
    """The asked lines with their locations, in one order (to compare a replay with)."""
    return tuple(
        sorted(
            (
                ReturnLine(
                    restock=restock,
                    restock_at=None if elsewhere == line.location else elsewhere,
                    **line.model_dump(),
                )
                for (restock, elsewhere), units in asked.items()
                for line in _resolve(order, units)
            ),
            key=lambda ln: (ln.sku, ln.location, ln.restock.value, ln.restock_at or ""),
        )
    )


def _return_values(line: ReturnLine) -> list[Any]:
    """A return's line as its row keeps it (`_return` reads it back)."""
    kept: list[Any] = [line.sku, line.location, line.quantity, line.restock.value]
    return kept if line.restock_at is None else [*kept, line.restock_at]


def _resold(made: Return) -> list[SoldUnits]:
    units: Counter[tuple[str, str, str | None]] = Counter()
    for line in made.lines:
        if line.restock is RestockType.RESELL:
            units[line.sku, line.location, line.restock_at] += line.quantity
    return [
        SoldUnits(sku=s, location=loc, quantity=n, restock_at=at)
        for (s, loc, at), n in sorted(
            units.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or "")
        )
    ]


def _refund_values(order: Order, refund_id: str | None, refunded: Decimal) -> dict[str, Any]:
    """The refund columns of a cancellation's or a return's row."""
    return {
        "refund_id": refund_id,
        "refunded": refunded if refund_id else None,
        "currency": None if order.payment is None else order.payment.currency,
    }


def _return(row: Any) -> Return:
    return Return(
        id=row.id,
        order_id=row.order_id,
        lines=tuple(
            ReturnLine(
                sku=line[0],
                location=line[1],
                quantity=int(line[2]),
                restock=RestockType(line[3]),
                restock_at=line[4] if len(line) > 4 else None,
            )
            for line in row.lines
        ),
        created_at=utc(row.created_at),
        refund_id=row.refund_id,
        refunded=Decimal(0) if row.refunded is None else in_units(row.refunded, row.currency),
    )
