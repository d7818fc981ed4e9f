"""The systems under test: commercekit and its baselines, behind one small interface.

Each system is opened once per worker process (its own connections) and once in
the driving process (to `prepare` the stock and `audit` the result). Every system
gets the same client setup: redis-py asyncio (hiredis when installed) with one
connection per client, asyncpg (directly, or through SQLAlchemy for the ledger)
with one connection per client, the same worker processes and event loop.
"""

from __future__ import annotations

import abc
import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

import asyncpg
import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from benchmarks.scenarios import Line, Scenario, sku_name
from commercekit.errors import OutOfStock
from commercekit.reservations import (
    Channel,
    DurableReservations,
    Kit,
    RedisReservationStore,
    ReservationLedger,
    ReservationLine,
    StockLevel,
    Strategy,
)
from commercekit.sql import migrate

TTL = 900  # seconds: holds outlive the run; nothing expires meanwhile
PREFIX = "bench"


@dataclass(frozen=True)
class Urls:
    """Where the servers are: a ``redis://`` URL and a libpq ``postgresql://`` URL."""

    redis: str
    postgres: str

    @property
    def sqlalchemy(self) -> str:
        """The PostgreSQL URL for SQLAlchemy's asyncpg dialect."""
        return self.postgres.replace("postgresql://", "postgresql+asyncpg://", 1)


@dataclass
class Audit:
    """What a system's data says after a phase, at a quiescent point."""

    oversold: int
    """Units handed out beyond the stock (over every SKU)."""
    conserved: bool
    """available + held (+ sold) == stock added for every SKU, available >= 0, and the
    held units (and the durable records) match what the clients were granted."""
    problems: list[str] = field(default_factory=list)


def _audit(
    stock: int,
    granted: Counter[int],
    available: list[int],
    held: list[int] | None,
    recorded: Counter[int] | None = None,
) -> Audit:
    """Compare per-SKU levels with the units the clients were told they got."""
    oversold = 0
    problems: list[str] = []
    for i, left in enumerate(available):
        got = granted.get(i, 0)
        oversold += max(0, got - stock)
        units_held = got if held is None else held[i]
        if left < 0 or left + units_held != stock or units_held != got:
            problems.append(f"{sku_name(i)}: available {left}, held {units_held}, granted {got}")
        if recorded is not None and recorded.get(i, 0) != got:
            problems.append(f"{sku_name(i)}: recorded {recorded.get(i, 0)}, granted {got}")
    return Audit(oversold, not problems, problems[:5])


class System(abc.ABC):
    """One way of reserving stock."""

    name: ClassVar[str]
    label: ClassVar[str]
    uses_postgres: ClassVar[bool] = False

    def __init__(self, urls: Urls, scenario: Scenario, clients: int) -> None:
        self.urls = urls
        self.scenario = scenario
        self.clients = max(clients, 1)

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect (one connection per client)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Disconnect."""

    @abc.abstractmethod
    async def prepare(self, stock: int) -> None:
        """Start afresh: every SKU of the scenario at `stock` units, no reservations."""

    @abc.abstractmethod
    async def reserve(self, lines: list[Line]) -> bool:
        """Hold every line or none: True if held, False if out of stock."""

    @abc.abstractmethod
    async def audit(self, stock: int, granted: Counter[int]) -> Audit:
        """Check no oversell and conservation against the units granted."""


# ------------------------------------------------------------------ Redis helpers
def _redis(url: str, clients: int) -> aioredis.Redis:
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=clients + 2, timeout=None)
    return aioredis.Redis.from_pool(pool)


class _RedisSystem(System):
    _redis: aioredis.Redis

    async def open(self) -> None:
        self._redis = _redis(self.urls.redis, self.clients)

    async def close(self) -> None:
        await self._redis.aclose()


# ------------------------------------------------------------------ commercekit
class CommerceKit(_RedisSystem):
    """`RedisReservationStore` with concurrent calls pipelined (``pipeline=True``)."""

    name = "commercekit"
    label = "commercekit (Redis Lua, pipelined)"
    pipeline: ClassVar[bool] = True

    async def open(self) -> None:
        await super().open()
        self.store = RedisReservationStore(self._redis, prefix=PREFIX, pipeline=self.pipeline)
        self._names = [sku_name(i) for i in range(self.scenario.skus)]

    async def prepare(self, stock: int) -> None:
        await self._redis.flushdb()
        levels = [StockLevel(sku=n, available=stock, held=0, sold=0) for n in self._names]
        await self.store.restore(levels, [], marker=uuid.uuid4().hex)

    async def reserve(self, lines: list[Line]) -> bool:
        try:
            await self.store.reserve(
                [(self._names[i], q) for i, q in lines], ttl=TTL, owner="bench"
            )
        except OutOfStock:
            return False
        return True

    async def _levels(self) -> tuple[list[int], list[int], list[int]]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in self._names:
                pipe.hmget(self.store._stock_key(name), "available", "held", "sold")
            rows = await pipe.execute()
        available = [int(r[0] or 0) for r in rows]
        held = [int(r[1] or 0) for r in rows]
        sold = [int(r[2] or 0) for r in rows]
        return available, held, sold

    async def audit(self, stock: int, granted: Counter[int]) -> Audit:
        available, held, sold = await self._levels()
        result = _audit(stock, granted, available, held)
        if any(sold):
            result.conserved = False
            result.problems.append("units sold without a confirm")
        return result


class CommerceKitLocations(CommerceKit):
    """The same store, each SKU's stock over 5 locations, reserved in a channel of all 5.

    Priority order: a line takes from the first location with units, then the
    next (a line splits where a location runs out).
    """

    name = "commercekit-5loc"
    label = "commercekit, stock over 5 locations (priority)"
    locations: ClassVar[tuple[str, ...]] = tuple(f"wh{i}" for i in range(5))
    strategy: ClassVar[Strategy] = Strategy.PRIORITY

    async def open(self) -> None:
        await super().open()
        self.channel = Channel("bench", self.locations, strategy=self.strategy)

    async def prepare(self, stock: int) -> None:
        await self._redis.flushdb()
        # `stock` units of each SKU in all, spread over the locations (the first get the rest).
        share, rest = divmod(stock, len(self.locations))
        levels = [
            StockLevel(sku=n, location=place, available=share + (i < rest), held=0, sold=0)
            for n in self._names
            for i, place in enumerate(self.locations)
        ]
        await self.store.restore(levels, [], marker=uuid.uuid4().hex)

    async def reserve(self, lines: list[Line]) -> bool:
        try:
            await self.store.reserve(
                [(self._names[i], q) for i, q in lines],
                ttl=TTL,
                owner="bench",
                channel=self.channel,
            )
        except OutOfStock:
            return False
        return True

    async def _levels(self) -> tuple[list[int], list[int], list[int]]:
        fields = [
            f"{bucket}@{place}"
            for place in self.locations
            for bucket in ("available", "held", "sold")
        ]
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in self._names:
                pipe.hmget(self.store._stock_key(name), *fields)
            rows = await pipe.execute()
        totals = [[sum(int(v or 0) for v in row[k::3]) for row in rows] for k in range(3)]
        return totals[0], totals[1], totals[2]


class CommerceKitMostStock(CommerceKitLocations):
    """Over 5 locations, the fullest first: each call reads and ranks all 5."""

    name = "commercekit-5loc-most"
    label = "commercekit, stock over 5 locations (most stock first)"
    strategy = Strategy.MOST_STOCK


class CommerceKitKits(CommerceKit):
    """The same store, each SKU a kit of 3 components (1 unit of each per kit).

    A kit line holds its 3 components in the same script: each reserve reads
    and moves three stock hashes instead of one.
    """

    name = "commercekit-kit3"
    label = "commercekit, each SKU a kit of 3 components"
    parts: ClassVar[tuple[str, ...]] = ("a", "b", "c")

    async def prepare(self, stock: int) -> None:
        await self._redis.flushdb()
        levels = [
            StockLevel(sku=f"{n}-{part}", available=stock, held=0, sold=0)
            for n in self._names
            for part in self.parts
        ]
        one_each = [(part, 1) for part in self.parts]
        kits = [
            Kit(
                sku=n,
                components=tuple(ReservationLine(sku=f"{n}-{p}", quantity=q) for p, q in one_each),
            )
            for n in self._names
        ]
        await self.store.restore(levels, [], marker=uuid.uuid4().hex, kits=kits)

    async def _levels(self) -> tuple[list[int], list[int], list[int]]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in self._names:
                for part in self.parts:
                    pipe.hmget(self.store._stock_key(f"{name}-{part}"), "available", "held", "sold")
            rows = await pipe.execute()
        per_kit = [rows[i : i + len(self.parts)] for i in range(0, len(rows), len(self.parts))]
        levels: list[list[int]] = [[], [], []]
        for parts in per_kit:
            for k in range(3):
                values = {int(part[k] or 0) for part in parts}
                # Every component of a kit moves together: one value each, or -1 (a problem).
                levels[k].append(values.pop() if len(values) == 1 else -1)
        return levels[0], levels[1], levels[2]


class CommerceKitUnpipelined(CommerceKit):
    """The same store, one awaited EVALSHA per call (``pipeline=False``, the default)."""

    name = "commercekit-nopipe"
    label = "commercekit (Redis Lua, one EVALSHA per call)"
    pipeline = False


class CommerceKitDurable(CommerceKit):
    """`DurableReservations`: each hold recorded in PostgreSQL before the caller gets it."""

    name = "commercekit-durable"
    label = "commercekit + PostgreSQL ledger (batched records)"
    uses_postgres = True

    async def open(self) -> None:
        self._redis = _redis(self.urls.redis, self.clients)
        self.store = RedisReservationStore(self._redis, prefix=PREFIX, pipeline=True, guarded=True)
        self._names = [sku_name(i) for i in range(self.scenario.skus)]
        self.engine: AsyncEngine = create_async_engine(
            self.urls.sqlalchemy, pool_size=min(self.clients, 16), max_overflow=0
        )
        self.durable = DurableReservations(
            self.store, ReservationLedger(self.engine), batch_records=True
        )

    async def close(self) -> None:
        await super().close()
        await self.engine.dispose()

    async def prepare(self, stock: int) -> None:
        await migrate(self.engine)
        async with self.engine.begin() as conn:
            await conn.execute(text("TRUNCATE commercekit_reservations, commercekit_stock"))
            await conn.execute(
                text("INSERT INTO commercekit_stock (sku, added, sold) VALUES (:s, :a, 0)"),
                [{"s": n, "a": stock} for n in self._names],
            )
        await self._redis.flushdb()
        await self.durable.start()  # restores Redis from the ledger: every SKU at `stock`

    async def reserve(self, lines: list[Line]) -> bool:
        try:
            await self.durable.reserve(
                [(self._names[i], q) for i, q in lines], ttl=TTL, owner="bench"
            )
        except OutOfStock:
            return False
        return True

    async def audit(self, stock: int, granted: Counter[int]) -> Audit:
        available, held, _sold = await self._levels()
        index = {n: i for i, n in enumerate(self._names)}
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT l->>0, sum((l->>1)::int) FROM commercekit_reservations, "
                    "jsonb_array_elements(lines) l WHERE status = 'PENDING' GROUP BY 1"
                )
            )
            recorded = Counter({index[sku]: int(units) for sku, units in rows})
        return _audit(stock, granted, available, held, recorded)


# ------------------------------------------------------------------ naive Redis
class NaiveRedis(_RedisSystem):
    """Read, compare, then write: GET (MGET for a cart), then DECRBY each line."""

    name = "redis-naive"
    label = "naive Redis (GET, compare, DECRBY)"

    def _key(self, i: int) -> str:
        return f"{PREFIX}:naive:{sku_name(i)}"

    async def prepare(self, stock: int) -> None:
        await self._redis.flushdb()
        await self._redis.mset({self._key(i): stock for i in range(self.scenario.skus)})

    async def reserve(self, lines: list[Line]) -> bool:
        if len(lines) == 1:
            ((i, q),) = lines
            key = self._key(i)
            if int(await self._redis.get(key) or 0) < q:
                return False
            await self._redis.decrby(key, q)
            return True
        keys = [self._key(i) for i, _ in lines]
        values = await self._redis.mget(keys)
        if any(int(v or 0) < q for v, (_, q) in zip(values, lines, strict=True)):
            return False
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, (_, q) in zip(keys, lines, strict=True):
                pipe.decrby(key, q)
            await pipe.execute()
        return True

    async def audit(self, stock: int, granted: Counter[int]) -> Audit:
        values = await self._redis.mget([self._key(i) for i in range(self.scenario.skus)])
        return _audit(stock, granted, [int(v or 0) for v in values], None)


# ------------------------------------------------------------------ PostgreSQL
_SCHEMA = """
CREATE TABLE IF NOT EXISTS bench_stock (id int PRIMARY KEY, sku text NOT NULL, stock int NOT NULL);
CREATE TABLE IF NOT EXISTS bench_reservations (
    id uuid PRIMARY KEY,
    owner text NOT NULL,
    status text NOT NULL DEFAULT 'PENDING',
    lines jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
"""

_TAKE = "UPDATE bench_stock SET stock = stock - $2 WHERE id = $1 AND stock >= $2"
_RECORD = (
    "INSERT INTO bench_reservations (id, owner, lines, expires_at) "
    "VALUES ($1, 'bench', $2::jsonb, now() + make_interval(secs => $3))"
)
# The strongest single-statement form: one round trip, one implicit transaction.
_CTE_ONE = """
WITH took AS (
    UPDATE bench_stock SET stock = stock - $2 WHERE id = $1 AND stock >= $2 RETURNING id
)
INSERT INTO bench_reservations (id, owner, lines, expires_at)
SELECT $3, 'bench', $4::jsonb, now() + make_interval(secs => $5) FROM took
RETURNING id
"""
# A cart: lock its rows in id order, take every line only if every line has the units.
_CTE_CART = """
WITH want AS (SELECT * FROM unnest($1::int[], $2::int[]) AS w(id, q)),
locked AS (
    SELECT s.id, s.stock FROM bench_stock s JOIN want w USING (id) ORDER BY s.id FOR UPDATE
),
enough AS (
    SELECT count(*) = cardinality($1::int[]) AND bool_and(l.stock >= w.q) AS ok
    FROM locked l JOIN want w USING (id)
),
took AS (
    UPDATE bench_stock s SET stock = s.stock - w.q
    FROM want w, enough WHERE enough.ok AND s.id = w.id
    RETURNING s.id
)
INSERT INTO bench_reservations (id, owner, lines, expires_at)
SELECT $3, 'bench', $4::jsonb, now() + make_interval(secs => $5)
FROM enough WHERE enough.ok AND (SELECT count(*) FROM took) = cardinality($1::int[])
RETURNING id
"""


def _lines_json(lines: list[Line]) -> str:
    return json.dumps([[sku_name(i), q] for i, q in lines])


class _Postgres(System):
    uses_postgres = True
    _pool: asyncpg.Pool

    async def open(self) -> None:
        size = min(self.clients, 256)
        self._pool = await asyncpg.create_pool(self.urls.postgres, min_size=size, max_size=size)

    async def close(self) -> None:
        await self._pool.close()

    async def prepare(self, stock: int) -> None:
        async with self._pool.acquire() as conn:
            await conn.execute(_SCHEMA)
            await conn.execute("TRUNCATE bench_stock, bench_reservations")
            await conn.copy_records_to_table(
                "bench_stock",
                records=[(i, sku_name(i), stock) for i in range(self.scenario.skus)],
            )
            await conn.execute("VACUUM ANALYZE bench_stock")

    async def audit(self, stock: int, granted: Counter[int]) -> Audit:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch("SELECT id, stock FROM bench_stock ORDER BY id")
            held_rows = await conn.fetch(
                "SELECT l->>0 AS sku, sum((l->>1)::int) AS units FROM bench_reservations, "
                "jsonb_array_elements(lines) l GROUP BY 1"
            )
        available = [0] * self.scenario.skus
        for row in rows:
            available[row["id"]] = row["stock"]
        held = [0] * self.scenario.skus
        for row in held_rows:
            held[int(row["sku"].removeprefix("SKU-"))] = int(row["units"])
        return _audit(stock, granted, available, held)


class RowLockTransaction(_Postgres):
    """Saleor-style: conditional UPDATE per line, then INSERT, in one transaction."""

    name = "pg-rowlock"
    label = "PostgreSQL row locks (UPDATE ... WHERE stock >= q; INSERT; COMMIT)"

    async def reserve(self, lines: list[Line]) -> bool:
        async with self._pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            try:
                for i, q in lines:
                    if await conn.execute(_TAKE, i, q) != "UPDATE 1":
                        await tx.rollback()
                        return False
                await conn.execute(_RECORD, uuid.uuid4(), _lines_json(lines), float(TTL))
            except BaseException:
                await tx.rollback()
                raise
            await tx.commit()
            return True


class SingleStatement(_Postgres):
    """The UPDATE and the INSERT as one CTE statement: one round trip per reservation."""

    name = "pg-cte"
    label = "PostgreSQL, UPDATE + INSERT in one CTE statement"

    async def reserve(self, lines: list[Line]) -> bool:
        rid, payload = uuid.uuid4(), _lines_json(lines)
        async with self._pool.acquire() as conn:
            if len(lines) == 1:
                ((i, q),) = lines
                found = await conn.fetchval(_CTE_ONE, i, q, rid, payload, float(TTL))
            else:
                ids, qty = [i for i, _ in lines], [q for _, q in lines]
                found = await conn.fetchval(_CTE_CART, ids, qty, rid, payload, float(TTL))
        return found is not None


# ------------------------------------------------------------------ the original
_ORIGINAL_LUA = """
for i = 1, #KEYS do
  if tonumber(redis.call('GET', KEYS[i]) or '0') < tonumber(ARGV[i]) then return 0 end
end
for i = 1, #KEYS do redis.call('DECRBY', KEYS[i], ARGV[i]) end
return 1
"""


class OriginalPath(_Postgres):
    """The original system: a Lua check-and-decrement, then a synchronous INSERT per request."""

    name = "original"
    label = "original path (Lua decrement, then one PostgreSQL INSERT per request)"

    async def open(self) -> None:
        await super().open()
        self._redis = _redis(self.urls.redis, self.clients)
        self._decrement = self._redis.register_script(_ORIGINAL_LUA)

    async def close(self) -> None:
        await super().close()
        await self._redis.aclose()

    def _key(self, i: int) -> str:
        return f"{PREFIX}:original:{sku_name(i)}"

    async def prepare(self, stock: int) -> None:
        async with self._pool.acquire() as conn:
            await conn.execute(_SCHEMA)
            await conn.execute("TRUNCATE bench_stock, bench_reservations")
        await self._redis.flushdb()
        await self._redis.mset({self._key(i): stock for i in range(self.scenario.skus)})

    async def reserve(self, lines: list[Line]) -> bool:
        keys = [self._key(i) for i, _ in lines]
        if not await self._decrement(keys=keys, args=[q for _, q in lines]):
            return False
        async with self._pool.acquire() as conn:
            await conn.execute(_RECORD, uuid.uuid4(), _lines_json(lines), float(TTL))
        return True

    async def audit(self, stock: int, granted: Counter[int]) -> Audit:
        values = await self._redis.mget([self._key(i) for i in range(self.scenario.skus)])
        async with self._pool.acquire() as conn:
            held_rows = await conn.fetch(
                "SELECT l->>0 AS sku, sum((l->>1)::int) AS units FROM bench_reservations, "
                "jsonb_array_elements(lines) l GROUP BY 1"
            )
        recorded = Counter({int(r["sku"].removeprefix("SKU-")): int(r["units"]) for r in held_rows})
        return _audit(stock, granted, [int(v or 0) for v in values], None, recorded)


SYSTEMS: dict[str, type[System]] = {
    cls.name: cls
    for cls in (
        CommerceKit,
        CommerceKitDurable,
        CommerceKitUnpipelined,
        CommerceKitLocations,
        CommerceKitMostStock,
        CommerceKitKits,
        RowLockTransaction,
        SingleStatement,
        NaiveRedis,
        OriginalPath,
    )
}

BASELINES = ("pg-rowlock", "pg-cte", "redis-naive", "original")


def describe(name: str) -> dict[str, Any]:
    """Name and label of a system, for the report."""
    cls = SYSTEMS[name]
    return {"name": cls.name, "label": cls.label, "postgres": cls.uses_postgres}
