"""`StockWatch`: stock events from the stock journal, through the outbox, exactly once.

The journal has every change of stock in the ledger's transaction; the
watch reads the rows after its position in the journal, follows each
SKU's levels per location, and writes, in one transaction with moving its
position past those rows:

- ``stock.adjusted`` for each change made by hand (set, restock, adjust,
  or a repair of the units added);
- ``stock.low`` when the available units fall to the SKU's threshold at
  that location (`set_threshold`) or below it, still above 0;
- ``stock.out`` when they fall to 0 or below;
- ``stock.back_in`` when they rise above 0 after a ``stock.out``.

A crash before the commit announces nothing, and the next run announces
those rows again; after it, nothing twice. Nothing of this runs on the
path of a reservation: the holds only write their journal rows, and the
watch writes nothing to them.

The position is a transaction and a row id (`JournalRow.txid`, `JournalRow.id`).
On PostgreSQL the watch reads only the rows of transactions older than
every one still running, so a row that commits after one with a higher id
is not passed by: a transaction left open holds the events back until it
ends, and loses none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from commercekit.errors import InvalidRequest, MissingExtraError
from commercekit.events.catalog import StockAdjusted, StockBackIn, StockLow, StockOut
from commercekit.events.envelope import Envelope
from commercekit.reservations.journal import StockQuantities, StockReason
from commercekit.reservations.models import DEFAULT_LOCATION

try:
    from sqlalchemy import (
        BigInteger,
        Boolean,
        ColumnElement,
        String,
        bindparam,
        func,
        literal,
        select,
        text,
        tuple_,
        update,
    )
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
    from sqlalchemy.orm import Mapped, mapped_column

    from commercekit.events.outbox import Outbox
    from commercekit.reservations.ledger import JournalRow
    from commercekit.sql import Base, insert_or_ignore, upsert, utc
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtraError("postgres", __name__) from exc

__all__ = ["StockWatch", "StockWatchPosition", "StockWatchRow"]

_BY_HAND = {
    reason.value
    for reason in (StockReason.SET, StockReason.RESTOCK, StockReason.ADJUST, StockReason.RECONCILE)
}
_LEVELS = ("available", "held", "committed", "shipped", "damaged", "written_off")
_LOCK = 0x636B5F7761746368  # the advisory lock one watch holds at a time ("ck_watch")


class StockWatchRow(Base):
    """A SKU at a location as the watch last saw it, and its low-stock threshold."""

    __tablename__ = "commercekit_stock_watch"

    sku: Mapped[str] = mapped_column(String(200), primary_key=True)
    location: Mapped[str] = mapped_column(String(64), primary_key=True)
    low: Mapped[int | None] = mapped_column(BigInteger, default=None)
    """Announce ``stock.low`` at this many available units or fewer (None: never)."""
    available: Mapped[int] = mapped_column(BigInteger, default=0)
    held: Mapped[int] = mapped_column(BigInteger, default=0)
    committed: Mapped[int] = mapped_column(BigInteger, default=0)
    shipped: Mapped[int] = mapped_column(BigInteger, default=0)
    damaged: Mapped[int] = mapped_column(BigInteger, default=0)
    written_off: Mapped[int] = mapped_column(BigInteger, default=0)
    out: Mapped[bool] = mapped_column(Boolean, default=False)
    """Whether ``stock.out`` was the last of ``stock.out`` and ``stock.back_in`` announced."""


class StockWatchPosition(Base):
    """How far the watch has announced the journal: every row up to this one.

    One row. The journal is read in the order of (`txid`, `journal_id`).
    """

    __tablename__ = "commercekit_stock_watch_position"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    txid: Mapped[int] = mapped_column(BigInteger)
    """`JournalRow.txid` of the last row announced."""
    journal_id: Mapped[int] = mapped_column(BigInteger)
    """`JournalRow.id` of the last row announced."""


class StockWatch:
    """Announces changes of stock from the journal: ``stock.*`` events, once each.

    ```python
    watch = StockWatch(engine, Outbox(), source="inventory")
    await watch.set_threshold("MUG", 5)  # stock.low at 5 available or fewer
    while True:
        await watch.run_once()  # the outbox relay publishes what it wrote
        await asyncio.sleep(1)
    ```

    Args:
        engine: the ledger's database (its journal, and the outbox table).
        outbox: where the events are written, in the watch's transaction.
        source: the events' CloudEvents ``source``.
    """

    def __init__(self, engine: AsyncEngine, outbox: Outbox, *, source: str = "inventory") -> None:
        self.engine = engine
        self.outbox = outbox
        self.source = source

    async def set_threshold(
        self, sku: str, low: int | None, *, location: str = DEFAULT_LOCATION
    ) -> None:
        """Announce ``stock.low`` when `sku` has `low` available units or fewer at `location`.

        None stops it. The threshold counts from the next change: a SKU
        already below it is announced when it falls further, or when it
        comes back and falls again.

        Raises:
            InvalidRequest: `low` is below 0.
        """
        if low is not None and low < 0:
            raise InvalidRequest(f"a low-stock threshold is at least 0, not {low}")
        async with self.engine.begin() as conn:
            await conn.execute(
                upsert(
                    conn.dialect.name,
                    StockWatchRow,
                    {
                        "sku": sku,
                        "location": location,
                        "low": low,
                        "out": False,
                        **dict.fromkeys(_LEVELS, 0),
                    },
                    index_elements=["sku", "location"],
                    set_={"low": low},
                )
            )

    async def threshold(self, sku: str, *, location: str = DEFAULT_LOCATION) -> int | None:
        """The low-stock threshold of `sku` at `location` (None: none)."""
        async with self.engine.connect() as conn:
            low = await conn.scalar(
                select(StockWatchRow.low).where(
                    StockWatchRow.sku == sku, StockWatchRow.location == location
                )
            )
        return None if low is None else int(low)

    async def levels(self, sku: str, *, location: str = DEFAULT_LOCATION) -> StockQuantities:
        """The levels of `sku` at `location` as of the last row the watch announced."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(StockWatchRow).where(
                        StockWatchRow.sku == sku, StockWatchRow.location == location
                    )
                )
            ).first()
        return StockQuantities() if row is None else StockQuantities(**_levels(row))

    async def pending(self) -> int:
        """Rows of the journal not announced yet (on PostgreSQL, of finished transactions)."""
        async with self.engine.connect() as conn:
            count = await conn.scalar(
                select(func.count()).select_from(JournalRow).where(*await _unannounced(conn))
            )
        return int(count or 0)

    async def run_once(self, limit: int = 2000) -> int:
        """Announce up to `limit` journal rows, oldest first; how many it announced.

        One watch runs at a time (a PostgreSQL advisory lock): a second one
        started meanwhile returns 0 at once (on SQLite, it waits its turn).
        """
        if not 1 <= limit <= 10_000:
            raise InvalidRequest("limit must be 1 to 10000")
        async with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                if not await conn.scalar(
                    text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _LOCK}
                ):
                    return 0
            else:  # a write first takes SQLite's one write lock before anything is read
                await conn.execute(
                    update(StockWatchPosition)
                    .where(StockWatchPosition.name == _POSITION)
                    .values(txid=StockWatchPosition.txid)
                )
            rows = (
                await conn.execute(
                    select(
                        JournalRow.id,
                        JournalRow.txid,
                        JournalRow.at,
                        JournalRow.sku,
                        JournalRow.location,
                        JournalRow.reason,
                        JournalRow.actor,
                        JournalRow.quantity,
                        JournalRow.source,
                        JournalRow.target,
                    )
                    .where(*await _unannounced(conn))
                    .order_by(JournalRow.txid, JournalRow.id)
                    .limit(limit)
                )
            ).all()
            if not rows:
                return 0
            seen = await self._seen(conn, {(row.sku, row.location) for row in rows})
            events = self._follow(rows, seen)
            await conn.execute(
                _SAVE,
                [
                    {"at_sku": sku, "at_location": location, "out": watched.out, **watched.level}
                    for (sku, location), watched in seen.items()
                ],
            )
            last = {"txid": rows[-1].txid, "journal_id": rows[-1].id}
            await conn.execute(
                upsert(
                    conn.dialect.name,
                    StockWatchPosition,
                    {"name": _POSITION, **last},
                    index_elements=["name"],
                    set_=last,
                )
            )
            if events:
                await self.outbox.add(conn, *events)
            return len(rows)

    def _follow(self, rows: Sequence[Any], seen: dict[tuple[str, str], _Watched]) -> list[Any]:
        """Take each SKU and location through `rows`, in order; the events on the way."""
        events: list[Envelope[Any]] = []
        for row in rows:  # plain ints: this runs for every row the shop writes
            watched = seen[row.sku, row.location]
            level, quantity = watched.level, int(row.quantity)
            was = level["available"]
            change = 0
            if row.source is None:
                change = quantity
            else:
                level[row.source] -= quantity
            if row.target is None:
                change = -quantity
            else:
                level[row.target] += quantity
            events.extend(self._announce(row, watched, was, change))
        return events

    async def _seen(
        self, conn: AsyncConnection, pairs: set[tuple[str, str]]
    ) -> dict[tuple[str, str], _Watched]:
        """Each pair's levels as last announced and its threshold (a row made for a new one)."""
        seen = await self._read(conn, pairs)
        new = pairs - seen.keys()
        if new:  # a SKU or location the watch has not seen before: rare
            await conn.execute(
                insert_or_ignore(
                    conn.dialect.name,
                    StockWatchRow,
                    [
                        {"sku": sku, "location": location, "out": False,
                         **dict.fromkeys(_LEVELS, 0)}
                        for sku, location in sorted(new)
                    ],
                    index_elements=["sku", "location"],
                )
            )  # fmt: skip
            seen.update(await self._read(conn, new))
        return seen

    async def _read(
        self, conn: AsyncConnection, pairs: set[tuple[str, str]]
    ) -> dict[tuple[str, str], _Watched]:
        found = await conn.execute(
            select(StockWatchRow)
            .where(tuple_(StockWatchRow.sku, StockWatchRow.location).in_(sorted(pairs)))
            .with_for_update()
        )
        return {
            (row.sku, row.location): _Watched(
                _levels(row),
                None if row.low is None else int(row.low),
                bool(row.out),
            )
            for row in found
        }

    def _announce(self, row: Any, watched: _Watched, was: int, change: int) -> list[Envelope[Any]]:
        """The events of journal row `row`, which took `watched` from `was` available units."""
        level, low = watched.level, watched.low
        now = level["available"]
        adjusted = change and row.reason in _BY_HAND
        if row.reason == StockReason.OPENING or not (
            adjusted
            or (was > 0 >= now)
            or (low is not None and was > low >= now > 0)
            or (watched.out and now > 0)
        ):  # most rows: nothing to announce (an opening row moved nothing either)
            return []
        common = {
            "sku": row.sku,
            "location": row.location,
            "available": now,
            "on_hand": now + level["held"] + level["committed"],
            "journal_id": row.id,
        }
        payloads: list[StockAdjusted | StockLow | StockOut | StockBackIn] = []
        if adjusted:
            payloads.append(
                StockAdjusted(**common, reason=row.reason, change=change, actor=row.actor)
            )
        if was > 0 >= now:
            payloads.append(StockOut(**common))
            watched.out = True
        elif low is not None and was > low >= now > 0:
            payloads.append(StockLow(**common, threshold=low))
        elif watched.out and now > 0:
            payloads.append(StockBackIn(**common))
            watched.out = False
        return [
            Envelope.wrap(
                payload,
                source=self.source,
                id=f"{payload.event_type}:{row.id}",
                time=utc(row.at),
            )
            for payload in payloads
        ]


_SAVE = (
    update(StockWatchRow)
    .where(
        StockWatchRow.sku == bindparam("at_sku"),
        StockWatchRow.location == bindparam("at_location"),
    )
    .values(out=bindparam("out"), **{name: bindparam(name) for name in _LEVELS})
)
"""Each SKU and location's levels after a run (executed once per pair, as one batch)."""

_POSITION = "stock"
"""`StockWatchPosition.name` of the watch's one row."""


async def _unannounced(conn: AsyncConnection) -> list[ColumnElement[bool]]:
    """What selects the journal rows after the watch's position, read on `conn`.

    On PostgreSQL, only rows of transactions older than every one still
    running: none of those can commit later behind the position.
    """
    position = (
        await conn.execute(
            select(StockWatchPosition.txid, StockWatchPosition.journal_id).where(
                StockWatchPosition.name == _POSITION
            )
        )
    ).first()
    txid, journal_id = (0, 0) if position is None else position
    after = [
        tuple_(JournalRow.txid, JournalRow.id)
        > tuple_(literal(txid, BigInteger), literal(journal_id, BigInteger))
    ]
    if conn.dialect.name == "postgresql":
        after.append(JournalRow.txid < func.txid_snapshot_xmin(func.txid_current_snapshot()))
    return after


@dataclass
class _Watched:
    """A SKU at a location while a run goes through its rows: its units by state."""

    level: dict[str, int]
    low: int | None
    out: bool


def _levels(row: Any) -> dict[str, int]:
    """A watch row's units by state."""
    return {name: int(getattr(row, name)) for name in _LEVELS}
