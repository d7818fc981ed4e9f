"""The durable ledger: reservations and stock totals in PostgreSQL (or SQLite).

Redis decides every transition (its Lua scripts are the arbiter); the ledger
records each decision exactly once, with conditional updates, so a repeated
write changes nothing. The ledger is what Redis is restored from after a
flush or an empty restart, and what `reconcile` compares Redis with.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from commercekit.errors import InvalidRequest, MissingExtraError, StockConflict
from commercekit.reservations._records import from_allocations, to_allocations
from commercekit.reservations.journal import (
    StockEntry,
    StockQuantities,
    StockReason,
    StockState,
    levels,
    move,
    state,
)
from commercekit.reservations.kits import Kit, check_nesting
from commercekit.reservations.models import (
    DEFAULT_LOCATION,
    PurchaseLimit,
    Reservation,
    ReservationLine,
    ReservationStatus,
    SoldUnits,
    StockLevel,
)

try:
    from sqlalchemy import (
        JSON,
        BigInteger,
        Boolean,
        ColumnElement,
        DateTime,
        Index,
        Integer,
        String,
        delete,
        func,
        insert,
        select,
        text,
        update,
    )
    from sqlalchemy.dialects.postgresql import JSONB
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
    from sqlalchemy.ext.compiler import compiles
    from sqlalchemy.orm import Mapped, mapped_column
    from sqlalchemy.sql.functions import FunctionElement

    from commercekit.sql import Base, dialect_of, insert_or_ignore, read_snapshot, upsert, utc
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtraError("postgres", __name__) from exc

__all__ = [
    "JournalRow",
    "KitRow",
    "ReservationLedger",
    "ReservationRow",
    "StockMoveRow",
    "StockRow",
]

T = TypeVar("T")


class StockRow(Base):
    """Units ever added to a SKU at a location (net of adjustments), and units sold there."""

    __tablename__ = "commercekit_stock"

    sku: Mapped[str] = mapped_column(String(200), primary_key=True)
    location: Mapped[str] = mapped_column(
        String(64), primary_key=True, default=DEFAULT_LOCATION, server_default=DEFAULT_LOCATION
    )
    added: Mapped[int] = mapped_column(BigInteger, default=0)
    sold: Mapped[int] = mapped_column(BigInteger, default=0)
    backorder: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """Units that may be held beyond the stock here (the backorder cap)."""
    purchase_limit: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """Units one owner may hold or buy within `limit_window_ms` (0: no limit; the SKU's,
    kept on its default location's row)."""
    limit_window_ms: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class ReservationRow(Base):
    """The durable record of one reservation."""

    __tablename__ = "commercekit_reservations"
    __table_args__ = (Index("ix_commercekit_reservations_status_expires", "status", "expires_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200), index=True)
    status: Mapped[str] = mapped_column(String(16))
    lines: Mapped[list[list[Any]]] = mapped_column(JSON().with_variant(JSONB(), "postgresql"))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    allocations: Mapped[list[list[Any]] | None] = mapped_column(
        JSON().with_variant(JSONB(), "postgresql")
    )
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]


class KitRow(Base):
    """A kit's definition: its components per unit, and the version of that definition."""

    __tablename__ = "commercekit_kits"

    sku: Mapped[str] = mapped_column(String(200), primary_key=True)
    components: Mapped[list[list[Any]]] = mapped_column(JSON().with_variant(JSONB(), "postgresql"))
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime]


class StockMoveRow(Base):
    """A move of sold units back on sale (a cancellation, a return), recorded once by its id.

    Recording it takes its units off ``sold`` in `StockRow`; `applied` says
    whether Redis has made the same move (``unsell.lua``) yet.
    """

    __tablename__ = "commercekit_stock_moves"

    id: Mapped[str] = mapped_column(String(140), primary_key=True)
    lines: Mapped[list[list[Any]]] = mapped_column(JSON().with_variant(JSONB(), "postgresql"))
    applied: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    created_at: Mapped[dt.datetime]


class _WritingTransaction(FunctionElement[int]):
    """`JournalRow.txid`'s default: the id of the transaction writing the row.

    On SQLite, 1: it has one writer at a time, so its ids are in commit
    order already.
    """

    type = BigInteger()
    inherit_cache = True


@compiles(_WritingTransaction)
def _no_transaction_id(element: _WritingTransaction, compiler: Any, **kw: Any) -> str:
    return "1"


@compiles(_WritingTransaction, "postgresql")
def _transaction_id(element: _WritingTransaction, compiler: Any, **kw: Any) -> str:
    return "txid_current()"


class JournalRow(Base):
    """A stored row of the stock journal (`commercekit.reservations.journal`)."""

    __tablename__ = "commercekit_stock_journal"
    __table_args__ = (
        Index("ix_commercekit_stock_journal_sku_location", "sku", "location", "id"),
        Index("ix_commercekit_stock_journal_reference", "reference"),
        Index(
            "ix_commercekit_stock_journal_order_id",
            "order_id",
            postgresql_where=text("order_id IS NOT NULL"),
            sqlite_where=text("order_id IS NOT NULL"),
        ),
        Index("ix_commercekit_stock_journal_txid", "txid", "id"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    sku: Mapped[str] = mapped_column(String(200))
    location: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(16))
    reference: Mapped[str | None] = mapped_column(String(140))
    order_id: Mapped[str | None] = mapped_column(String(64))
    actor: Mapped[str | None] = mapped_column(String(200))
    quantity: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str | None] = mapped_column(String(16))
    target: Mapped[str | None] = mapped_column(String(16))
    txid: Mapped[int] = mapped_column(BigInteger, server_default=_WritingTransaction())
    """The transaction that wrote the row (PostgreSQL's ``txid_current()``; 1 on SQLite).

    With `id`, the order a `StockWatch` reads the journal in: ids are taken
    when rows are inserted, not when they commit, so a row can commit after
    one with a higher id; every row of a transaction older than all those
    still running has committed.
    """


async def write_journal(
    executor: AsyncConnection | AsyncSession, rows: Sequence[dict[str, Any]]
) -> None:
    """Insert journal rows (`move`'s values) in the transaction of `executor`."""
    if rows:
        await executor.execute(insert(JournalRow), list(rows))


async def journal_levels_in(conn: AsyncConnection) -> dict[tuple[str, str], StockQuantities]:
    """``{(sku, location): quantities}`` the whole journal sums to, read on `conn`."""
    rows = await conn.execute(
        select(
            JournalRow.sku,
            JournalRow.location,
            JournalRow.source,
            JournalRow.target,
            func.sum(JournalRow.quantity),
        ).group_by(JournalRow.sku, JournalRow.location, JournalRow.source, JournalRow.target)
    )
    grouped: dict[tuple[str, str], list[tuple[str | None, str | None, int]]] = {}
    for sku, location, source, target, quantity in rows:
        grouped.setdefault((sku, location), []).append((source, target, int(quantity)))
    return {here: levels(moves) for here, moves in grouped.items()}


async def units_held_in(
    conn: AsyncConnection, where: ColumnElement[bool]
) -> dict[tuple[str, str], int]:
    """``{(sku, location): units}`` the reservations `where` selects hold, read on `conn`."""
    found = await conn.execute(select(ReservationRow).where(where))
    return _held_by_place(map(_reservation, found))


def _move_lines(row: Any) -> list[SoldUnits]:
    return [
        SoldUnits(sku=line[0], location=line[1], quantity=int(line[2]),
                  restock_at=line[3] if len(line) > 3 else None)
        for line in row.lines
    ]  # fmt: skip


def _held_by_place(pending: Iterable[Reservation]) -> dict[tuple[str, str], int]:
    """``{(sku, location): units}`` the `pending` reservations hold."""
    held: dict[tuple[str, str], int] = {}
    for reservation in pending:
        for placed in reservation.holdings:
            here = (placed.sku, placed.location)
            held[here] = held.get(here, 0) + placed.quantity
    return held


def _move_values(line: SoldUnits) -> list[Any]:
    """A line as `StockMoveRow.lines` keeps it (`_move_lines` reads it back)."""
    kept: list[Any] = [line.sku, line.location, line.quantity]
    return kept if line.restock_at is None else [*kept, line.restock_at]


def _kit(row: Any) -> Kit:
    return Kit(
        sku=row.sku,
        components=tuple(ReservationLine(sku=sku, quantity=int(q)) for sku, q in row.components),
        version=int(row.version),
        updated_at=utc(row.updated_at),
    )


_INSERT_MANY = text(
    """
    WITH made AS (
        INSERT INTO commercekit_reservations
            (id, owner, status, lines, idempotency_key, allocations, created_at, updated_at,
             expires_at)
        SELECT id, owner, status, lines::jsonb, idempotency_key, allocations::jsonb, created_at,
            updated_at, expires_at
        FROM unnest(
            CAST(:id AS text[]), CAST(:owner AS text[]), CAST(:status AS text[]),
            CAST(:lines AS text[]), CAST(:idempotency_key AS text[]),
            CAST(:allocations AS text[]),
            CAST(:created_at AS timestamptz[]), CAST(:updated_at AS timestamptz[]),
            CAST(:expires_at AS timestamptz[])
        ) AS t(id, owner, status, lines, idempotency_key, allocations, created_at, updated_at,
            expires_at)
        ON CONFLICT (id) DO NOTHING
        RETURNING id, owner, created_at
    ), journal AS (
        INSERT INTO commercekit_stock_journal
            (at, sku, location, reason, reference, actor, quantity, source, target)
        SELECT made.created_at, j.sku, j.location, 'reserve', made.id, made.owner, j.quantity,
            'available', 'held'
        FROM unnest(
            CAST(:j_id AS text[]), CAST(:j_sku AS text[]), CAST(:j_location AS text[]),
            CAST(:j_quantity AS bigint[])
        ) AS j(id, sku, location, quantity)
        JOIN made ON made.id = j.id
    )
    SELECT id FROM made
    """
)
"""The batch of holds in one statement: their rows and, for those inserted now, their
journal rows (a statement is atomic: both or neither)."""


def _held(
    reservation: Reservation,
    source: StockState | None,
    target: StockState | None,
    reason: StockReason,
    *,
    at: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """Journal rows moving every unit `reservation` holds from `source` to `target`."""
    return [
        move(
            held.sku,
            held.location,
            held.quantity,
            (source, target),
            reason,
            reference=reservation.id,
            order_id=reservation.id if target is StockState.COMMITTED else None,
            actor=reservation.owner,
            at=at or reservation.updated_at,
        )
        for held in reservation.holdings
    ]


def _amended(before: Reservation, after: Reservation, reason: StockReason) -> list[dict[str, Any]]:
    """Journal rows taking a pending hold from `before`'s units to `after`'s."""
    change: dict[tuple[str, str], int] = {}
    for held in after.holdings:
        change[held.sku, held.location] = change.get((held.sku, held.location), 0) + held.quantity
    for held in before.holdings:
        change[held.sku, held.location] = change.get((held.sku, held.location), 0) - held.quantity
    return [
        move(sku, location, units, (StockState.AVAILABLE, StockState.HELD), reason,
             reference=after.id, actor=after.owner, at=after.updated_at)
        for (sku, location), units in sorted(change.items())
        if units
    ]  # fmt: skip


_SETTLED = {
    ReservationStatus.CONFIRMED: (StockState.COMMITTED, StockReason.CONFIRM),
    ReservationStatus.RELEASED: (StockState.AVAILABLE, StockReason.RELEASE),
    ReservationStatus.EXPIRED: (StockState.AVAILABLE, StockReason.EXPIRE),
}
"""Where a settled reservation's held units go, and the journal's reason."""


def _row_values(r: Reservation) -> dict[str, Any]:
    return {
        "id": r.id,
        "owner": r.owner,
        "status": r.status.value,
        "lines": [[line.sku, line.quantity] for line in r.lines],
        "idempotency_key": r.idempotency_key,
        "allocations": from_allocations(r.allocations) or None,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
        "expires_at": r.expires_at,
    }


def _reservation(row: Any) -> Reservation:
    return Reservation(
        id=row.id,
        status=ReservationStatus(row.status),
        owner=row.owner,
        lines=tuple(ReservationLine(sku=sku, quantity=int(q)) for sku, q in row.lines),
        created_at=utc(row.created_at),
        updated_at=utc(row.updated_at),
        expires_at=utc(row.expires_at),
        idempotency_key=row.idempotency_key,
        allocations=to_allocations(row.allocations),
    )


class ReservationLedger:
    """Reads and idempotent writes of the reservation tables.

    Args:
        engine: a SQLAlchemy async engine (asyncpg on PostgreSQL; aiosqlite
            works for the embedded mode). Apply the migrations first with
            `commercekit.sql.migrate`.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._dialect = engine.dialect.name

    async def record_created(
        self, reservation: Reservation, *, reason: StockReason = StockReason.RESERVE
    ) -> bool:
        """Insert a new reservation's row; True if this call inserted it.

        A second insert of the same id (an idempotent replay) does nothing.
        Its units are journaled as held, for `reason`.
        """
        async with self.engine.begin() as conn:
            values = _row_values(reservation)
            stmt = insert_or_ignore(self._dialect, ReservationRow, values, index_elements=["id"])
            result = await conn.execute(stmt)
            if not result.rowcount:
                return False
            await write_journal(
                conn,
                _held(reservation, StockState.AVAILABLE, StockState.HELD, reason,
                      at=reservation.created_at),
            )  # fmt: skip
            return True

    async def record_created_many(self, reservations: Sequence[Reservation]) -> list[bool]:
        """Insert several new reservations' rows in one transaction (all or none).

        Returns, for each reservation, whether this call inserted its row.
        The units of those inserted are journaled as held.
        """
        if not reservations:
            return []
        rows = [_row_values(r) for r in reservations]
        if self.engine.dialect.name == "postgresql":
            # One statement text whatever the batch size, so it is prepared once;
            # one statement is atomic on its own, so it runs without the BEGIN
            # and COMMIT round trips of an explicit transaction.
            columns = {name: [row[name] for row in rows] for name in rows[0]}
            columns["lines"] = [json.dumps(lines) for lines in columns["lines"]]
            columns["allocations"] = [
                None if placed is None else json.dumps(placed) for placed in columns["allocations"]
            ]
            # The journal's rows, one per SKU and location held (`holdings` without
            # building its models: this runs for every hold of the hot path).
            j_id, j_sku, j_location, j_quantity = [], [], [], []
            for r in reservations:
                placed = r.allocations or r.lines
                for unit in placed:
                    j_id.append(r.id)
                    j_sku.append(unit.sku)
                    j_location.append(getattr(unit, "location", DEFAULT_LOCATION))
                    j_quantity.append(unit.quantity)
            columns.update(j_id=j_id, j_sku=j_sku, j_location=j_location, j_quantity=j_quantity)
            async with self.engine.connect() as conn:
                single = await conn.execution_options(isolation_level="AUTOCOMMIT")
                inserted = set((await single.execute(_INSERT_MANY, columns)).scalars())
        else:
            async with self.engine.begin() as conn:
                stmt = insert_or_ignore(self._dialect, ReservationRow, rows, index_elements=["id"])
                result = await conn.execute(stmt.returning(ReservationRow.id))
                inserted = set(result.scalars())
                await write_journal(
                    conn,
                    [
                        row
                        for r in reservations
                        if r.id in inserted
                        for row in _held(
                            r, StockState.AVAILABLE, StockState.HELD, StockReason.RESERVE,
                            at=r.created_at,
                        )
                    ],
                )  # fmt: skip
        return [r.id in inserted for r in reservations]

    async def record_transition(
        self, reservation: Reservation, *, reason: StockReason | None = None
    ) -> bool:
        """Record a reservation's new status (or deadline); True if this call changed the row.

        A PENDING row moves to the terminal status once; confirmed units are
        added to the sold total of their SKU and location in the same transaction. A row that is
        missing (its insert failed after the hold was made) is created in
        its final state. Recording the same transition again does nothing.

        The journal gets the held units' move (to committed, or back to
        available), for `reason` (by default the status's: confirm, release,
        expire); a hold amended in Redis only is first journaled as amended.
        """
        async with self.engine.begin() as conn:
            if reservation.status is ReservationStatus.PENDING:  # an extension
                result = await conn.execute(
                    update(ReservationRow)
                    .where(ReservationRow.id == reservation.id, ReservationRow.status == "PENDING")
                    .values(expires_at=reservation.expires_at, updated_at=reservation.updated_at)
                )
                return bool(result.rowcount)
            target, default = _SETTLED[reservation.status]
            reason = reason or default
            settled = await conn.execute(
                update(ReservationRow)
                .where(ReservationRow.id == reservation.id, ReservationRow.status == "PENDING")
                .values(status=reservation.status.value, updated_at=reservation.updated_at)
                .returning(*ReservationRow.__table__.c)
            )
            row = settled.first()
            if row is not None:  # what the ledger held may differ (an amend it missed)
                missed = reason if reason is StockReason.RECONCILE else StockReason.AMEND
                journal = _amended(_reservation(row), reservation, missed)
            else:
                values = _row_values(reservation)
                stmt = insert_or_ignore(
                    self._dialect, ReservationRow, values, index_elements=["id"]
                )
                inserted = await conn.execute(stmt)
                if not inserted.rowcount:
                    return False  # the row was terminal already: recorded before
                journal = _held(
                    reservation, StockState.AVAILABLE, StockState.HELD, reason,
                    at=reservation.created_at,
                )  # fmt: skip
            journal += _held(reservation, StockState.HELD, target, reason)
            await write_journal(conn, journal)
            if reservation.status is ReservationStatus.CONFIRMED:
                for held in reservation.holdings:
                    await self._add_sold(conn, held.sku, held.location, held.quantity)
            return True

    async def record_amend(
        self, reservation: Reservation, *, reason: StockReason = StockReason.AMEND
    ) -> bool:
        """Record a PENDING reservation's new lines and allocations; True if the row changed.

        Only a PENDING row changes (a settled one keeps what it settled with),
        and only toward a newer amendment (`updated_at`), so a late write of an
        older one changes nothing. The journal gets the change of the units
        held, per SKU and location.
        """
        values = _row_values(reservation)
        async with self.engine.begin() as conn:
            # A no-op write first: it takes the row's lock (PostgreSQL) or the
            # database's (SQLite) before the lines it replaces are read.
            newer = (
                (ReservationRow.id == reservation.id)
                & (ReservationRow.status == "PENDING")
                & (ReservationRow.updated_at < reservation.updated_at)
            )
            locked = await conn.execute(
                update(ReservationRow).where(newer).values(owner=ReservationRow.owner)
            )
            if not locked.rowcount:
                return False
            before = (await conn.execute(select(ReservationRow).where(newer))).one()
            await conn.execute(
                update(ReservationRow)
                .where(newer)
                .values(
                    lines=values["lines"],
                    allocations=values["allocations"],
                    updated_at=reservation.updated_at,
                )
            )
            await write_journal(conn, _amended(_reservation(before), reservation, reason))
            return True

    async def _add_sold(
        self, conn: AsyncConnection, sku: str, location: str, quantity: int
    ) -> None:
        await conn.execute(
            upsert(
                self._dialect,
                StockRow,
                {"sku": sku, "location": location, "added": 0, "sold": quantity},
                index_elements=["sku", "location"],
                set_={"sold": StockRow.sold + quantity, "updated_at": func.now()},
            )
        )

    async def change_stock(
        self,
        sku: str,
        change: Callable[[], Awaitable[StockLevel]],
        *,
        location: str = DEFAULT_LOCATION,
        reason: StockReason = StockReason.ADJUST,
        moves: Callable[[list[tuple[str, list[SoldUnits]]]], Awaitable[None]] | None = None,
    ) -> StockLevel:
        """Run `change` (the Redis stock script) under the row lock of `sku` at `location`.

        The lock serialises stock changes of one SKU and location across
        replicas, so the ledger's ``added`` always matches the last change
        Redis made. If the change fails, nothing is recorded. A change of
        ``added`` is journaled for `reason`.

        With `moves`, it is first called, under the lock, with the recorded
        moves of `sku` not marked made in Redis yet (if any), read in the
        same transaction: a return restocked at another location changes
        both locations' ``added``, which `change` then rewrites.
        """
        async with self.engine.begin() as conn:
            here, before = await self._lock_stock_row(conn, sku, location)
            if moves is not None:
                pending = await self._unapplied(conn, 1000)
                mine = [
                    (mid, lines) for mid, lines in pending if any(ln.sku == sku for ln in lines)
                ]
                if mine:
                    await moves(mine)
            level = await change()
            after = level.available + level.held + level.sold
            await conn.execute(
                update(StockRow)
                .where(here)
                .values(added=after, backorder=level.backorder, updated_at=func.now())
            )
            if after != before:
                await write_journal(
                    conn,
                    [move(sku, location, after - before, (None, StockState.AVAILABLE), reason)],
                )
            return level

    async def _lock_stock_row(
        self, conn: AsyncConnection, sku: str, location: str
    ) -> tuple[Any, int]:
        """Make sure the row of `sku` at `location` exists and hold its lock.

        Returns its WHERE clause, and its ``added``.
        """
        here = (StockRow.sku == sku) & (StockRow.location == location)
        seed = {"sku": sku, "location": location, "added": 0, "sold": 0}
        await conn.execute(
            insert_or_ignore(self._dialect, StockRow, seed, index_elements=["sku", "location"])
        )
        added = await conn.scalar(select(StockRow.added).where(here).with_for_update())
        return here, int(added or 0)

    async def _lock_kits(self, conn: AsyncConnection) -> None:
        """Keep other kit changes out until this transaction ends (SQLite has one writer)."""
        if self._dialect == "postgresql":
            await conn.execute(text("LOCK TABLE commercekit_kits IN EXCLUSIVE MODE"))

    async def get(self, reservation_id: str) -> Reservation | None:
        """The recorded reservation, or None."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(ReservationRow).where(ReservationRow.id == reservation_id)
                )
            ).first()
        return _reservation(row) if row is not None else None

    async def pending(self) -> list[Reservation]:
        """Every reservation the ledger has as PENDING."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(ReservationRow).where(ReservationRow.status == "PENDING")
            )
            return [_reservation(row) for row in rows]

    async def settled_with_keys(self, since: dt.datetime) -> list[Reservation]:
        """Settled reservations made with an idempotency key at `since` or later.

        Their keys still replay them (`RedisReservationStore.restore` writes
        the keys back after Redis lost them).
        """
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(ReservationRow).where(
                    ReservationRow.idempotency_key.is_not(None),
                    ReservationRow.status != "PENDING",
                    ReservationRow.created_at >= since,
                )
            )
            return [_reservation(row) for row in rows]

    async def stock_totals(self) -> dict[str, tuple[int, int]]:
        """``{sku: (added, sold)}`` for every SKU in the ledger, summed over its locations."""
        totals: dict[str, tuple[int, int]] = {}
        for (sku, _location), (added, sold) in (await self.location_totals()).items():
            before = totals.get(sku, (0, 0))
            totals[sku] = (before[0] + added, before[1] + sold)
        return totals

    async def location_totals(self) -> dict[tuple[str, str], tuple[int, int]]:
        """``{(sku, location): (added, sold)}`` for every SKU and location in the ledger."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(StockRow.sku, StockRow.location, StockRow.added, StockRow.sold)
            )
            return {(sku, place): (int(added), int(sold)) for sku, place, added, sold in rows}

    async def record_limit(
        self,
        sku: str,
        quantity: int,
        window_ms: int,
        write: Callable[[], Awaitable[PurchaseLimit | None]],
    ) -> PurchaseLimit | None:
        """Record `sku`'s purchase limit and `write` it to Redis, under the SKU's row lock."""
        async with self.engine.begin() as conn:
            here, _ = await self._lock_stock_row(conn, sku, DEFAULT_LOCATION)
            limit = await write()
            await conn.execute(
                update(StockRow)
                .where(here)
                .values(purchase_limit=quantity, limit_window_ms=window_ms if quantity else 0)
            )
            return limit

    async def limits(self) -> dict[str, PurchaseLimit]:
        """Every SKU's purchase limit, by SKU."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(StockRow.sku, StockRow.purchase_limit, StockRow.limit_window_ms).where(
                    StockRow.purchase_limit > 0
                )
            )
            return {
                sku: PurchaseLimit(
                    sku=sku, quantity=int(n), window=dt.timedelta(milliseconds=int(window))
                )
                for sku, n, window in rows
            }

    async def confirmed_since(self, since: dt.datetime) -> list[Reservation]:
        """Confirmed reservations made at `since` or later (they count against limits)."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(ReservationRow).where(
                    ReservationRow.status == "CONFIRMED", ReservationRow.created_at >= since
                )
            )
            return [_reservation(row) for row in rows]

    async def backorder_of(self, sku: str, *, location: str = DEFAULT_LOCATION) -> int:
        """The backorder cap recorded for `sku` at `location` (0 if none)."""
        async with self.engine.connect() as conn:
            cap = await conn.scalar(
                select(StockRow.backorder).where(StockRow.sku == sku, StockRow.location == location)
            )
        return int(cap or 0)

    async def totals_of(self, sku: str, *, location: str = DEFAULT_LOCATION) -> tuple[int, int]:
        """``(added, sold)`` of one SKU at one location (zeros if unknown)."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(StockRow.added, StockRow.sold).where(
                        StockRow.sku == sku, StockRow.location == location
                    )
                )
            ).first()
        return (int(row.added), int(row.sold)) if row is not None else (0, 0)

    async def snapshot(self) -> tuple[list[StockLevel], list[Reservation]]:
        """Stock levels and pending holds as the ledger has them, read consistently.

        Per SKU and location: available = added - sold - held, held being the
        pending holds' units allocated there (below zero only within the
        backorder cap).
        """
        stock, pending, _ = await self.restore_point()
        return stock, pending

    async def restore_point(self) -> tuple[list[StockLevel], list[Reservation], list[str]]:
        """`snapshot`, and the ids of the moves back on sale Redis may not have made yet.

        The stock read counts those moves already: a Redis restored from it
        must remember them as applied. All three reads see one snapshot.
        """
        # One snapshot for every read.
        async with self.engine.connect() as conn:
            await read_snapshot(conn)
            rows = await conn.execute(
                select(ReservationRow).where(ReservationRow.status == "PENDING")
            )
            pending = [_reservation(row) for row in rows]
            totals = await conn.execute(
                select(
                    StockRow.sku,
                    StockRow.location,
                    StockRow.added,
                    StockRow.sold,
                    StockRow.backorder,
                )
            )
            held = _held_by_place(pending)
            stock = [
                StockLevel(
                    sku=sku,
                    location=place,
                    # Below zero only on backorder, never below the cap.
                    available=max(
                        int(added) - int(sold) - held.get((sku, place), 0), -int(backorder)
                    ),
                    held=held.get((sku, place), 0),
                    sold=int(sold),
                    backorder=int(backorder),
                )
                for sku, place, added, sold, backorder in totals
            ]
            moves = (
                await conn.scalars(select(StockMoveRow.id).where(StockMoveRow.applied.is_(False)))
            ).all()
        return stock, pending, list(moves)

    # ------------------------------------------------------------- journal
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
        """Rows of the stock journal, oldest first, with the levels before and after each.

        Args:
            sku: keep the rows of this SKU.
            location: keep the rows of this location.
            reference: keep the rows of this reservation, shipment, cancellation
                or return (`StockEntry.reference`).
            order_id: keep the rows of this order.
            reason: keep the rows of this reason.
            after: keep the rows after this `StockEntry.id` (the last one of
                the page before: a cursor that no new row shifts). Ids are
                taken at insert, not at commit: while changes are in flight,
                a row with a lower id may still commit; to follow the journal
                as it grows, use `StockWatch`'s events.
            limit: at most this many rows (1 to 1000).

        Raises:
            InvalidRequest: `limit` or `after` is out of range.
        """
        if not 1 <= limit <= 1000 or after < 0:
            raise InvalidRequest("limit must be 1 to 1000 and after at least 0")
        query = select(JournalRow).where(JournalRow.id > after)
        for column, wanted in (
            (JournalRow.sku, sku),
            (JournalRow.location, location),
            (JournalRow.reference, reference),
            (JournalRow.order_id, order_id),
            (JournalRow.reason, None if reason is None else reason.value),
        ):
            if wanted is not None:
                query = query.where(column == wanted)
        async with self.engine.connect() as conn:
            await read_snapshot(conn)
            rows = (await conn.execute(query.order_by(JournalRow.id).limit(limit))).all()
            spans: dict[tuple[str, str], tuple[int, int]] = {}
            for row in rows:
                first, _ = spans.get((row.sku, row.location), (row.id, row.id))
                spans[row.sku, row.location] = (first, row.id)
            around: dict[int, tuple[StockQuantities, StockQuantities]] = {}
            for (at_sku, at_location), (first, last) in spans.items():
                here = (JournalRow.sku == at_sku) & (JournalRow.location == at_location)
                level = levels(
                    await conn.execute(
                        select(JournalRow.source, JournalRow.target, func.sum(JournalRow.quantity))
                        .where(here, JournalRow.id < first)
                        .group_by(JournalRow.source, JournalRow.target)
                    )
                )
                walk = await conn.execute(
                    select(JournalRow.id, JournalRow.source, JournalRow.target, JournalRow.quantity)
                    .where(here, JournalRow.id >= first, JournalRow.id <= last)
                    .order_by(JournalRow.id)
                )
                for entry_id, source, target, quantity in walk:
                    moved = level.moved(state(source), state(target), int(quantity))
                    around[entry_id] = (level, moved)
                    level = moved
        return [
            StockEntry(
                id=row.id,
                at=utc(row.at),
                sku=row.sku,
                location=row.location,
                reason=StockReason(row.reason),
                reference=row.reference,
                order_id=row.order_id,
                actor=row.actor,
                quantity=int(row.quantity),
                source=state(row.source),
                target=state(row.target),
                before=around[row.id][0],
                after=around[row.id][1],
            )
            for row in rows
        ]

    async def journal_levels(self) -> dict[tuple[str, str], StockQuantities]:
        """``{(sku, location): quantities}``: what the whole journal sums to."""
        async with self.engine.connect() as conn:
            return await journal_levels_in(conn)

    async def journal_drift(self) -> dict[tuple[str, str], dict[str, int]]:
        """Where the journal does not sum to the ledger: per SKU and location, by how much.

        Compares, in one snapshot, the journal's units added (all states),
        held, and sold (committed, shipped, damaged, written off) with the
        ledger's ``added``, its pending holds and its ``sold``. Each value is
        the ledger's minus the journal's; an empty answer proves them equal.
        """
        async with self.engine.connect() as conn:
            await read_snapshot(conn)
            journal = await journal_levels_in(conn)
            totals = await conn.execute(select(StockRow.sku, StockRow.location, StockRow.added,
                                               StockRow.sold))  # fmt: skip
            ledger = {(s, loc): [int(a), 0, int(sold)] for s, loc, a, sold in totals}
            pending = await units_held_in(conn, ReservationRow.status == "PENDING")
            for here, units in pending.items():
                ledger.setdefault(here, [0, 0, 0])[1] += units
        drift: dict[tuple[str, str], dict[str, int]] = {}
        for here in sorted(ledger.keys() | journal.keys()):
            added, in_holds, sold = ledger.get(here, [0, 0, 0])
            seen = journal.get(here, StockQuantities())
            off = {
                name: value
                for name, value in (
                    ("added", added - seen.added),
                    ("held", in_holds - seen.held),
                    ("sold", sold - seen.sold),
                )
                if value
            }
            if off:
                drift[here] = off
        return drift

    async def repair_journal(self, drift: dict[tuple[str, str], dict[str, int]]) -> None:
        """Write the RECONCILE rows that make the journal sum to the ledger (`journal_drift`)."""
        rows = []
        for (sku, location), off in drift.items():
            for name, target in (
                ("added", None),
                ("held", StockState.HELD),
                ("sold", StockState.COMMITTED),
            ):
                units = off.get(name, 0)
                if not units:
                    continue
                source = None if target is None else StockState.AVAILABLE
                rows.append(
                    move(sku, location, units, (source, target or StockState.AVAILABLE),
                         StockReason.RECONCILE)
                )  # fmt: skip
        async with self.engine.begin() as conn:
            await write_journal(conn, rows)

    # --------------------------------------------------------------- moves
    async def record_return_in(
        self,
        executor: AsyncConnection | AsyncSession,
        move_id: str,
        lines: Sequence[SoldUnits],
        *,
        now: dt.datetime | None = None,
        reason: StockReason = StockReason.CANCEL,
        source: StockState = StockState.COMMITTED,
        reference: str | None = None,
        order_id: str | None = None,
    ) -> bool:
        """Record move `move_id` of sold units back on sale, in the caller's transaction.

        The first time, each line's units come off ``sold`` at its SKU and
        location (under the stock row's lock); the same id again records
        nothing. Redis makes the move afterwards (`mark_applied` when it has).
        The journal moves the units from `source` (committed ones for a
        cancellation, shipped ones for a return) to available, for `reason`,
        naming `reference` (the move's id by default) and `order_id`. A line
        restocked at another location (`SoldUnits.restock_at`) moves its
        units from this location's ``added`` to that one's: out of `source`
        here, into available there.

        Returns:
            Whether it was recorded now.

        Raises:
            StockConflict: a line gives back more units than the ledger counts
                sold there (the caller's transaction must roll back).
        """
        at = now or dt.datetime.now(dt.UTC)
        values = {
            "id": move_id,
            "lines": [_move_values(line) for line in lines],
            "applied": False,
            "created_at": at,
        }
        made = await executor.execute(
            insert_or_ignore(dialect_of(executor), StockMoveRow, values).returning(StockMoveRow.id)
        )
        if made.first() is None:
            return False
        journal = []
        for line in lines:
            elsewhere = line.back_at != line.location
            taken = await executor.execute(
                update(StockRow)
                .where(StockRow.sku == line.sku)
                .where(StockRow.location == line.location)
                .where(StockRow.sold >= line.quantity)
                .values(
                    sold=StockRow.sold - line.quantity,
                    # Restocked elsewhere: they leave this location's units for the other's.
                    added=StockRow.added - (line.quantity if elsewhere else 0),
                    updated_at=func.now(),
                )
            )
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                raise StockConflict(
                    f"move {move_id} gives back {line.quantity} units of {line.sku} at "
                    f"{line.location}, more than the ledger counts sold there"
                )
            named = functools.partial(
                move, line.sku, quantity=line.quantity, reason=reason,
                reference=reference or move_id, order_id=order_id, at=at,
            )  # fmt: skip
            if not elsewhere:
                journal.append(named(line.location, route=(source, StockState.AVAILABLE)))
                continue
            seed = {"sku": line.sku, "location": line.back_at, "added": 0, "sold": 0}
            await executor.execute(
                insert_or_ignore(dialect_of(executor), StockRow, seed,
                                 index_elements=["sku", "location"])
            )  # fmt: skip
            await executor.execute(
                update(StockRow)
                .where(StockRow.sku == line.sku, StockRow.location == line.back_at)
                .values(added=StockRow.added + line.quantity, updated_at=func.now())
            )
            journal += [
                named(line.location, route=(source, None)),
                named(line.back_at, route=(None, StockState.AVAILABLE)),
            ]
        await write_journal(executor, journal)
        return True

    async def unapplied_moves(self, limit: int = 1000) -> list[tuple[str, list[SoldUnits]]]:
        """Moves recorded and not made in Redis yet (oldest first), with their lines."""
        async with self.engine.connect() as conn:
            return await self._unapplied(conn, limit)

    async def _unapplied(
        self, conn: AsyncConnection, limit: int
    ) -> list[tuple[str, list[SoldUnits]]]:
        rows = await conn.execute(
            select(StockMoveRow)
            .where(StockMoveRow.applied.is_(False))
            .order_by(StockMoveRow.created_at, StockMoveRow.id)
            .limit(limit)
        )
        return [(row.id, _move_lines(row)) for row in rows]

    async def move(self, move_id: str) -> tuple[list[SoldUnits], bool] | None:
        """Move `move_id`'s lines and whether Redis made it, if it was recorded."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(StockMoveRow).where(StockMoveRow.id == move_id))
            ).first()
        return None if row is None else (_move_lines(row), bool(row.applied))

    async def mark_applied(self, move_id: str) -> None:
        """Redis has made move `move_id`."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(StockMoveRow).where(StockMoveRow.id == move_id).values(applied=True)
            )

    # ---------------------------------------------------------------- kits
    async def kits(self) -> dict[str, Kit]:
        """Every kit's current definition, by SKU."""
        async with self.engine.connect() as conn:
            return {row.sku: _kit(row) for row in await conn.execute(select(KitRow))}

    async def save_kit(
        self,
        sku: str,
        components: Sequence[ReservationLine],
        write: Callable[[Kit], Awaitable[Kit]],
    ) -> Kit:
        """Record kit `sku` as `components` (its version one more), and `write` it to Redis.

        Kits are changed one at a time (a table lock on PostgreSQL), so the
        check that no kit is made of kits holds; if `write` fails, nothing
        is recorded.

        Raises:
            InvalidRequest: a component is a kit, or `sku` is another kit's component.
        """
        async with self.engine.begin() as conn:
            await self._lock_kits(conn)
            kits = {row.sku: _kit(row) for row in await conn.execute(select(KitRow))}
            check_nesting(sku, components, kits)
            before = kits.get(sku)
            kit = Kit(
                sku=sku,
                components=tuple(components),
                version=before.version + 1 if before is not None else 1,
                updated_at=dt.datetime.now(dt.UTC),
            )
            values = {
                "sku": sku,
                "components": [[part.sku, part.quantity] for part in kit.components],
                "version": kit.version,
                "updated_at": kit.updated_at,
            }
            await conn.execute(
                upsert(self._dialect, KitRow, values, index_elements=["sku"], set_=values)
            )
            return await write(kit)

    async def delete_kit(self, sku: str, write: Callable[[], Awaitable[bool]]) -> bool:
        """Forget kit `sku` and `write` that to Redis (nothing changes if it fails).

        Returns whether the ledger or Redis had it.
        """
        async with self.engine.begin() as conn:
            await self._lock_kits(conn)
            deleted = (await conn.execute(delete(KitRow).where(KitRow.sku == sku))).rowcount
            return await write() or bool(deleted)

    async def with_kit(self, sku: str, apply: Callable[[Kit | None], Awaitable[T]]) -> T:
        """Run `apply` with kit `sku` as recorded (None: no such kit), no kit changing meanwhile."""
        async with self.engine.begin() as conn:
            await self._lock_kits(conn)
            row = (await conn.execute(select(KitRow).where(KitRow.sku == sku))).first()
            return await apply(_kit(row) if row is not None else None)
