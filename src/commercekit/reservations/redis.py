"""`RedisReservationStore`: every mutation is one Lua script, run by SHA.

The scripts live in ``commercekit/reservations/lua/`` with their KEYS, ARGV
and replies documented at the top. They run the same on Redis 7, on Redis
Cluster and on fakeredis with Lua (the embedded mode), so there is one
implementation of the reservation logic. Redis must not evict keys
(``maxmemory-policy noeviction``, the default): a pending hold never expires
by itself, only by a transition.

Keys are spread over `shards` hash tags (``<prefix>:{s<n>}:``); a SKU lives in
one shard. A cart whose SKUs share a shard is one script call. On Redis
Cluster with ``shards > 1`` a cart may span shards, and so slots: its home
shard keeps the reservation, the other shards keep *parts* that follow it,
reserved one by one and undone if one fails, so the cart is still held
whole or not at all. A part left behind by a crash is settled after its
parent (or undone) by the sweeper, `part_grace` after the deadline.

With ``replicas=N`` a write is acknowledged only once ``WAIT N`` (on the
connection that carried its script, after it) counts N replicas: a failover
then keeps every acknowledged hold and sale. Otherwise the call raises
`NotReplicated`, after undoing (best effort) what a retry would repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import functools
import hashlib
import json
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from commercekit.errors import (
    BackendUnavailable,
    HoldExpired,
    IdempotencyConflict,
    InvalidRequest,
    InvalidTransition,
    MissingExtraError,
    NotReplicated,
    OutOfStock,
    OverLimit,
    PurchaseLimitExceeded,
    RedisDataLost,
    ReservationNotFound,
    ShortLine,
    StockConflict,
    UnsupportedRecordVersion,
)
from commercekit.reservations import _input
from commercekit.reservations._records import (
    fingerprint,
    from_allocations,
    new_id,
    to_allocations,
    to_ms,
    to_record,
    to_reservation,
    to_time,
)
from commercekit.reservations.kits import (
    Kit,
    Units,
    check_components,
    expand,
    kit_available,
    refuse_nesting,
)
from commercekit.reservations.locations import Channel, Split, Strategy, check_location
from commercekit.reservations.models import (
    DEFAULT_LOCATION,
    Allocation,
    PurchaseLimit,
    Reservation,
    ReservationLine,
    ReservationStatus,
    SoldUnits,
    StockLevel,
)
from commercekit.reservations.store import LineInput, TTLInput
from commercekit.transient import is_transient

try:
    from redis import exceptions as redis_errors

    from commercekit.reservations._batch import (
        SYNC,
        ReplicatedScriptPipeline,
        ScriptPipeline,
        Unreplicated,
    )
    from commercekit.reservations._lua import SCRIPTS, Script
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtraError("redis", __name__) from exc

__all__ = ["RedisReservationStore"]

_UNREACHABLE = (redis_errors.ConnectionError, redis_errors.TimeoutError)
_LEVEL = ("available", "held", "sold", "backorder")


def _fields(location: str) -> tuple[str, str, str, str]:
    """The stock hash's fields of `location`: available, held, sold, backorder (the cap).

    The default location's have no suffix.
    """
    if location == DEFAULT_LOCATION:
        return _LEVEL
    return (
        f"available@{location}",
        f"held@{location}",
        f"sold@{location}",
        f"backorder@{location}",
    )


@functools.lru_cache(maxsize=1024)
def _spec(channel: Channel) -> str:
    """The channel's allocation rule as reserve.lua reads it (JSON)."""
    return json.dumps(channel.spec(), separators=(",", ":"))


def _spec_of(channel: Channel | None) -> str:
    """The allocation rule in `channel` ("": every unit at the default location)."""
    return "" if channel is None else _spec(channel)


@dataclasses.dataclass(frozen=True)
class _Attempt:
    """What the script calls of one reserve share.

    The kits' generation it expanded the cart with, and the cart as asked
    when it is not the units held (a cart with kits).
    """

    gen: int = 0
    shown: str = ""


_PLAIN = _Attempt()


class _KitsChanged(Exception):
    """reserve.lua's ``KITS_CHANGED``: read the kits again (at least generation `gen`)."""

    def __init__(self, gen: int) -> None:
        self.gen = gen


def _text(value: Any) -> str:
    return value.decode() if type(value) is bytes else str(value)


def _kit_of(sku: str, raw: Any) -> Kit:
    definition = json.loads(raw)
    updated = definition.get("updated")
    return Kit.model_validate(
        {
            "sku": sku,
            "components": [{"sku": part, "quantity": q} for part, q in definition["components"]],
            "version": definition["version"],
            "updated_at": None if updated is None else to_time(int(updated)),
        }
    )


def _definition(kit: Kit) -> dict[str, Any]:
    """A kit as kits.lua keeps it."""
    return {
        "components": [[part.sku, part.quantity] for part in kit.components],
        "version": kit.version,
        **({"updated": to_ms(kit.updated_at)} if kit.updated_at is not None else {}),
    }


_EXPANSIONS_KEPT = 4096


class _Expansion(NamedTuple):
    """What a cart with kits holds.

    The units, the cart as reserve.lua records it, and where the units are
    without a channel.
    """

    units: tuple[Units, ...]
    shown: str
    at_default: tuple[Allocation, ...]


_NO_KITS = _Expansion((), "", ())


class _KitBook(Mapping[str, Kit]):
    """The kits as read from Redis, each parsed when first asked for (a shop may have many)."""

    __slots__ = ("_expanded", "_parsed", "_raw")

    def __init__(self, raw: Mapping[Any, Any]) -> None:
        self._raw = {_text(sku): value for sku, value in raw.items()}
        self._parsed: dict[str, Kit] = {}
        self._expanded: dict[tuple[ReservationLine, ...], _Expansion] = {}

    def expand(self, cart: tuple[ReservationLine, ...]) -> _Expansion:
        """What `cart` holds (`_NO_KITS` if it names no kit).

        Remembered per cart (a flash sale's carts repeat), until the kits change.
        """
        known = self._expanded.get(cart)
        if known is not None:
            return known
        if any(line.sku in self._raw for line in cart):
            units = expand(cart, self)
            known = _Expansion(
                units,
                json.dumps([[line.sku, line.quantity] for line in cart]),
                tuple(
                    Allocation(sku=u.sku, location=DEFAULT_LOCATION, quantity=u.quantity)
                    for u in units
                ),
            )
        else:
            known = _NO_KITS
        if len(self._expanded) >= _EXPANSIONS_KEPT:
            self._expanded.clear()
        self._expanded[cart] = known
        return known

    def __getitem__(self, sku: str) -> Kit:
        kit = self._parsed.get(sku)
        if kit is None:
            kit = self._parsed[sku] = _kit_of(sku, self._raw[sku])
        return kit

    def __contains__(self, sku: object) -> bool:
        return sku in self._raw

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


def _short_in_cart(
    cart: Sequence[ReservationLine], kits: Mapping[str, Kit], short: Sequence[ShortLine]
) -> tuple[ShortLine, ...]:
    """The cart lines that need a short SKU (a kit: one of its components).

    A kit line's `available` is the kits its short components make; lines
    sharing a component may each get what they want alone, not all together.
    """
    left = {line.sku: line.available for line in short}
    named: list[ShortLine] = []
    for line in cart:
        kit = kits.get(line.sku)
        if kit is None:
            if line.sku in left:
                named.append(ShortLine(line.sku, line.quantity, left[line.sku]))
            continue
        lacking = [part for part in kit.components if part.sku in left]
        if lacking:
            makes = min(left[part.sku] // part.quantity for part in lacking)
            named.append(ShortLine(line.sku, line.quantity, makes))
    return tuple(named)


_Record = dict[str, Any]
_Line = ReservationLine | Units
"""Units to hold: a cart's line, or a kit's components summed over the cart."""
_decode = json.JSONDecoder().raw_decode
_PENDING = ReservationStatus.PENDING
_UNREPORTED_MAX = 10_000  # per shard

MOVE_MEMORY = dt.timedelta(days=30)
"""How long a shard remembers a move of sold units back on sale (`return_sold`): the same
move id within it changes nothing. A ledger replays an unapplied move within seconds."""


def _at(location: str) -> str:
    """A location as the scripts name it: "" for the default one."""
    return "" if location == DEFAULT_LOCATION else location


def _refuse_newer(reply: _Record) -> None:
    """A script's ``RECORD_VERSION`` answer as `UnsupportedRecordVersion`."""
    if reply.get("err") == "RECORD_VERSION":
        raise UnsupportedRecordVersion(reply["id"], int(reply["v"]), int(reply["max"]))


def _public(exc: Unreplicated) -> NotReplicated:
    """The `NotReplicated` a caller gets (without the script's reply)."""
    return NotReplicated(str(exc), replicas=exc.replicas, wanted=exc.wanted)


def _made(
    record: _Record,
    cart: tuple[ReservationLine, ...],
    key: str | None,
    allocations: tuple[Allocation, ...] | None = None,
) -> Reservation:
    """The reservation this call just made: its lines are the checked cart, in order.

    Only the times and the status come from the record (Redis's clock);
    the lines are not parsed and validated again, nor the `allocations`
    when the caller knows them already.
    """
    created = int(record["created"])
    updated = int(record["updated"])
    created_at = to_time(created)
    return Reservation(
        id=record["id"],
        status=_PENDING if record["status"] == "PENDING" else ReservationStatus(record["status"]),
        owner=record["owner"],
        lines=cart,
        created_at=created_at,
        updated_at=created_at if updated == created else to_time(updated),
        expires_at=to_time(int(record["expires"])),
        idempotency_key=key,
        allocations=allocations
        if allocations is not None
        else to_allocations(record.get("cart_alloc") or record.get("alloc")),
    )


class RedisReservationStore:
    """A `ReservationStore` on Redis (redis-py asyncio), Redis Cluster or fakeredis.

    Args:
        redis: a ``redis.asyncio.Redis`` (or ``RedisCluster``, or fakeredis's
            ``FakeAsyncRedis``) client.
        prefix: namespace of every key, so several stores share one Redis.
        shards: hash tags the keys are spread over: 1 (the default) keeps a
            store in one cluster slot, so every cart is a single script; more
            spread SKUs over a cluster's masters (a cart over several shards
            is reserved part by part, see the module docs).
        retention: how long a terminal reservation stays readable.
        idempotency_ttl: how long an idempotency key replays its reservation.
        part_grace: how long after its deadline a part of a cart spread over
            shards waits for its parent before the sweeper settles it.
        guarded: refuse to act (`RedisDataLost`) until `restore` has run on
            this Redis; set by `DurableReservations`, which keeps a ledger to
            restore from after a flush or an empty restart.
        pipeline: send the scripts of calls made concurrently (in the same
            event-loop tick) together in one pipeline, up to
            `pipeline_limit` at a time. Each script stays atomic on its
            own, so the results are the same; under concurrency it saves
            round trips and client overhead (several times the throughput
            of one process), at the price of one event-loop tick of latency.
        pipeline_limit: at most this many calls in one pipeline.
        replicas: acknowledge a write only once this many replicas of its
            master have it (``WAIT`` on the connection of the write), so a
            failover cannot lose it; otherwise the call raises
            `NotReplicated` (a reserve's hold is released first, best
            effort). 0 (the default) acknowledges what the master wrote.
            Writes then always go through the pipeline (calls made together
            share one WAIT), whatever `pipeline` says.
        replica_timeout: how long a write waits for its replicas before
            `NotReplicated`; keep it below the client's socket timeout.
    """

    def __init__(
        self,
        redis: Any,
        *,
        prefix: str = "commercekit",
        shards: int = 1,
        retention: dt.timedelta = dt.timedelta(days=7),
        idempotency_ttl: dt.timedelta = dt.timedelta(days=1),
        part_grace: dt.timedelta = dt.timedelta(seconds=30),
        guarded: bool = False,
        pipeline: bool = False,
        pipeline_limit: int = 256,
        replicas: int = 0,
        replica_timeout: dt.timedelta = dt.timedelta(seconds=1),
    ) -> None:
        if not prefix or any(c in prefix for c in "{}"):
            raise InvalidRequest(f"prefix must be non-empty and without braces: {prefix!r}")
        if pipeline_limit < 1:
            raise InvalidRequest(f"pipeline_limit must be at least 1, got {pipeline_limit}")
        if not 1 <= shards <= 1024:
            raise InvalidRequest(f"shards must be between 1 and 1024, got {shards}")
        if replicas < 0:
            raise InvalidRequest(f"replicas must be 0 or more, got {replicas}")
        wait_ms = int(replica_timeout.total_seconds() * 1000)
        if wait_ms < 1:  # WAIT 0 would wait forever
            raise InvalidRequest(f"replica_timeout must be at least 1 ms, got {replica_timeout}")
        self._redis = redis
        self.prefix = prefix
        self.shards = shards
        self.guarded = guarded
        self._retention_ms = int(retention.total_seconds() * 1000)
        self.idempotency_ttl = idempotency_ttl
        self._idempotency_ms = int(idempotency_ttl.total_seconds() * 1000)
        self._grace_ms = int(part_grace.total_seconds() * 1000)
        self._scripts = {name: Script(name, guarded) for name in SCRIPTS}
        self._bases = [f"{prefix}:{{s{shard}}}:" for shard in range(shards)]
        self._dues = [f"{base}due" for base in self._bases]
        self.pipeline = pipeline
        self.replicas = replicas
        self._pipeline: ScriptPipeline | None = None
        if replicas:
            self._scripts["sync"] = SYNC
            self._pipeline = ReplicatedScriptPipeline(
                redis, replicas=replicas, timeout_ms=wait_ms, limit=pipeline_limit
            )
        elif pipeline:
            self._pipeline = ScriptPipeline(redis, limit=pipeline_limit)
        self._loading = asyncio.Lock()
        self._loaded = False
        # Per shard, holds a refused expire_due expired on the master: the
        # next sweep's run in that shard reports them (see expire_due).
        self._unreported: dict[int, dict[str, _Record]] = {}
        # The kits as last read, and the generation they were read at (see kits.lua).
        self._kits: _KitBook | None = None
        self._kit_gen = 0
        self._kits_reading: asyncio.Future[None] | None = None

    # ------------------------------------------------------------ keys
    def _base(self, shard: int) -> str:
        return self._bases[shard]

    def _shard_of(self, value: str) -> int:
        return zlib.crc32(value.encode()) % self.shards if self.shards > 1 else 0

    def shard_of(self, sku: str) -> int:
        """The shard `sku` lives in (0 with one shard): a cart of one shard is one script."""
        return self._shard_of(_input.check_sku(sku))

    def _new_id(self, home: int) -> str:
        """A fresh uuid that hashes to shard `home` (about `shards` tries)."""
        if self.shards == 1:
            return new_id()
        while True:
            rid = new_id()
            if self._shard_of(rid) == home:
                return rid

    def _stock_key(self, sku: str) -> str:
        return f"{self._base(self._shard_of(sku))}stock:{sku}"

    def _record_key(self, shard: int, reservation_id: str) -> str:
        return f"{self._base(shard)}res:{reservation_id}"

    def _due(self, shard: int) -> str:
        return self._dues[shard]

    def _marker(self, shard: int) -> str:
        return f"{self._base(shard)}hydrated"

    def _sync_key(self, shard: int) -> str:
        return f"{self._base(shard)}synced"

    def _kits_key(self) -> str:
        return f"{self._bases[0]}kits"

    def _kit_gen_key(self, shard: int) -> str:
        return f"{self._base(shard)}kitgen"

    def _idempotency_key(self, shard: int, owner: str, key: str) -> str:
        digest = hashlib.sha256(f"{owner}\0{key}".encode()).hexdigest()[:40]
        return f"{self._base(shard)}idem:{digest}"

    # ------------------------------------------------------------ plumbing
    async def load_scripts(self) -> None:
        """Load every script (done once before the first call).

        Loading up front keeps a burst of first calls from all meeting
        NOSCRIPT at once; NOSCRIPT after a restart or ``SCRIPT FLUSH`` is
        still handled, by loading the script again.
        """
        async with self._loading:
            if self._loaded:
                return
            try:
                for script in self._scripts.values():
                    await self._redis.script_load(script.source)
            except _UNREACHABLE as exc:
                raise BackendUnavailable(f"redis unreachable: {exc}") from exc
            self._loaded = True

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[object]) -> Any:
        if not self._loaded:
            await self.load_scripts()
        try:
            if self._pipeline is not None:
                raw = await self._pipeline(self._scripts[name], keys, args)
            else:
                raw = await self._scripts[name](self._redis, keys, args)
        except _UNREACHABLE as exc:
            raise BackendUnavailable(f"redis unreachable during {name}: {exc}") from exc
        except Unreplicated as exc:
            if name in ("reserve", "stock", "expire_due"):
                raise  # the caller undoes (or keeps) what it made
            raise _public(exc) from None
        except redis_errors.ResponseError as exc:
            if "NOTHYDRATED" in str(exc):
                raise RedisDataLost(str(exc)) from None
            if is_transient(exc):  # READONLY after a failover, LOADING, CLUSTERDOWN, OOM...
                raise BackendUnavailable(f"redis refused {name} for now: {exc}") from exc
            raise
        if name == "restore":
            return raw
        # Every reply is one JSON object written by cjson: no whitespace to skip.
        return _decode(raw.decode() if type(raw) is bytes else raw)[0]

    async def _read(self, shards: Iterable[int], queue: Callable[[Any], object]) -> list[Any]:
        """Run reads in one round trip; a guarded store also checks those shards have data."""
        checked = sorted(set(shards)) if self.guarded else []
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for shard in checked:
                    pipe.exists(self._marker(shard))
                queue(pipe)
                values: list[Any] = await pipe.execute()
        except _UNREACHABLE as exc:
            raise BackendUnavailable(f"redis unreachable: {exc}") from exc
        if not all(values[: len(checked)]):
            raise RedisDataLost("redis lost its reservation data; restore it from the ledger")
        return values[len(checked) :]

    # --------------------------------------------------------------- stock
    async def _stock_op(
        self, sku: str, op: str, amount: int, location: str, window_ms: int = 0
    ) -> StockLevel:
        location = check_location(location)
        base = self._base(self._shard_of(sku))
        at = "" if location == DEFAULT_LOCATION else location
        try:
            reply = await self._run(
                "stock", [self._stock_key(sku)], [op, amount, base, at, window_ms]
            )
        except Unreplicated as exc:
            if op not in ("set", "backorder", "limit"):  # a retried set is harmless; undo a change
                with contextlib.suppress(Exception):
                    made = _decode(exc.reply.decode() if type(exc.reply) is bytes else exc.reply)
                    if "err" not in made[0]:
                        await self._run(
                            "stock", [self._stock_key(sku)], ["adjust", -amount, base, at]
                        )
            raise _public(exc) from None
        if "err" in reply:
            level = f"available {reply['available']}, held {reply['held']}"
            if reply["backorder"]:
                level += f", backorder cap {reply['backorder']}"
            what = "set the backorder cap of" if op == "backorder" else op
            raise StockConflict(f"cannot {what} {sku} at {location} by {amount}: {level}")
        return StockLevel(
            sku=sku,
            location=location,
            available=reply["available"],
            held=reply["held"],
            sold=reply["sold"],
            backorder=reply["backorder"],
        )

    async def return_sold(self, move_id: str, lines: Sequence[SoldUnits]) -> bool:
        """Put sold units back on sale, once per `move_id`: sold -> available, per line.

        A line with `SoldUnits.restock_at` takes its units off sold where it
        says, and puts them on sale at that other location.

        The lines of one shard move together or not at all; the id is
        remembered in each shard for `MOVE_MEMORY`, so the same move again
        (a retry after a crash, a redelivered event) changes nothing there.
        `DurableReservations.return_sold` records the move in the ledger
        first: that is the one to call with a ledger.

        Returns:
            Whether any unit moved now (False: the move was applied before).

        Raises:
            StockConflict: a line gives back more units than are sold there
                (nothing of its shard moved).
        """
        move_id = _input.check_move_id(move_id)
        by_shard: dict[int, list[SoldUnits]] = {}
        for line in _input.check_sold_units(lines):
            by_shard.setdefault(self._shard_of(line.sku), []).append(line)
        moved = False
        for shard, group in sorted(by_shard.items()):
            reply = await self._run(
                "unsell",
                [f"{self._base(shard)}moves", *(self._stock_key(line.sku) for line in group)],
                [
                    self._base(shard),
                    move_id,
                    json.dumps(
                        [
                            [line.sku, _at(line.location), line.quantity, _at(line.back_at)]
                            for line in group
                        ]
                    ),
                    int(MOVE_MEMORY.total_seconds() * 1000),
                ],
            )
            if "err" in reply:
                where = reply["location"] or DEFAULT_LOCATION
                raise StockConflict(
                    f"move {move_id} gives back {reply['units']} units of {reply['sku']} at "
                    f"{where}, where {reply['sold']} are sold"
                )
            moved |= bool(reply["applied"])
        return moved

    async def set_stock(
        self, sku: str, on_hand: int, *, location: str = DEFAULT_LOCATION
    ) -> StockLevel:
        """See `ReservationStore.set_stock`."""
        sku = _input.check_sku(sku)
        amount = _input.check_int(on_hand, "on_hand", minimum=0)
        return await self._stock_op(sku, "set", amount, location)

    async def restock(
        self, sku: str, quantity: int, *, location: str = DEFAULT_LOCATION
    ) -> StockLevel:
        """See `ReservationStore.restock`."""
        sku = _input.check_sku(sku)
        amount = _input.check_int(quantity, "quantity", minimum=1)
        return await self._stock_op(sku, "restock", amount, location)

    async def adjust(self, sku: str, delta: int, *, location: str = DEFAULT_LOCATION) -> StockLevel:
        """See `ReservationStore.adjust`."""
        sku = _input.check_sku(sku)
        return await self._stock_op(sku, "adjust", _input.check_int(delta, "delta"), location)

    async def set_backorder(
        self, sku: str, cap: int, *, location: str = DEFAULT_LOCATION
    ) -> StockLevel:
        """See `ReservationStore.set_backorder`."""
        sku = _input.check_sku(sku)
        amount = _input.check_int(cap, "cap", minimum=0)
        return await self._stock_op(sku, "backorder", amount, location)

    async def set_purchase_limit(
        self, sku: str, quantity: int, *, window: dt.timedelta
    ) -> PurchaseLimit | None:
        """See `ReservationStore.set_purchase_limit`."""
        sku = _input.check_sku(sku)
        amount = _input.check_int(quantity, "quantity", minimum=0)
        if not isinstance(window, dt.timedelta):
            raise InvalidRequest(f"window must be a timedelta, got {window!r}")
        window_ms = int(window.total_seconds() * 1000)
        if window_ms < 1000:
            raise InvalidRequest(f"window must be at least 1 second, got {window}")
        await self._stock_op(sku, "limit", amount, DEFAULT_LOCATION, window_ms)
        if not amount:
            return None
        return PurchaseLimit(sku=sku, quantity=amount, window=dt.timedelta(milliseconds=window_ms))

    async def purchase_limit(self, sku: str) -> PurchaseLimit | None:
        """See `ReservationStore.purchase_limit`."""
        sku = _input.check_sku(sku)
        ((quantity, window_ms),) = await self._read(
            [self._shard_of(sku)],
            lambda pipe: pipe.hmget(self._stock_key(sku), "limit", "limit_ms"),
        )
        if not quantity:
            return None
        return PurchaseLimit(
            sku=sku, quantity=int(quantity), window=dt.timedelta(milliseconds=int(window_ms))
        )

    async def stock(self, sku: str, *, location: str = DEFAULT_LOCATION) -> StockLevel:
        """See `ReservationStore.stock`."""
        sku = _input.check_sku(sku)
        location = check_location(location)
        fields = _fields(location)
        (values,) = await self._read(
            [self._shard_of(sku)], lambda pipe: pipe.hmget(self._stock_key(sku), *fields)
        )
        available, held, sold, cap = (int(v or 0) for v in values)
        return StockLevel(
            sku=sku, location=location, available=available, held=held, sold=sold, backorder=cap
        )

    async def stock_by_location(self, sku: str) -> dict[str, StockLevel]:
        """See `ReservationStore.stock_by_location`."""
        sku = _input.check_sku(sku)
        (values,) = await self._read(
            [self._shard_of(sku)], lambda pipe: pipe.hgetall(self._stock_key(sku))
        )
        counts: dict[str, dict[str, int]] = {}
        for raw_name, raw_value in values.items():
            name = raw_name.decode() if isinstance(raw_name, bytes) else raw_name
            bucket, _, location = name.partition("@")
            if bucket in _LEVEL:
                counts.setdefault(location or DEFAULT_LOCATION, {})[bucket] = int(raw_value)
        return {
            location: StockLevel(
                sku=sku,
                location=location,
                available=level.get("available", 0),
                held=level.get("held", 0),
                sold=level.get("sold", 0),
                backorder=level.get("backorder", 0),
            )
            for location, level in sorted(counts.items())
        }

    async def available(
        self, skus: Iterable[str], *, channel: Channel | None = None
    ) -> dict[str, int]:
        """See `ReservationStore.available`; a kit's is what its components make."""
        wanted = list(dict.fromkeys(_input.check_sku(sku) for sku in skus))
        if not wanted:
            return {}
        if channel is not None and not isinstance(channel, Channel):
            raise InvalidRequest(f"channel must be a Channel, got {channel!r}")
        kits = await self._current_kits()
        for _ in range(3):
            units = [sku for sku in wanted if sku not in kits]
            for sku in wanted:
                if sku in kits:
                    units += (part.sku for part in kits[sku].components)
            units = list(dict.fromkeys(units))
            levels, gen = await self._available_units(units, channel)
            if gen <= self._kit_gen:
                break
            kits = await self._read_kits(gen)  # a kit changed since they were read
        return {
            sku: kit_available(kits[sku], levels) if sku in kits else levels[sku] for sku in wanted
        }

    async def _available_units(
        self, wanted: list[str], channel: Channel | None
    ) -> tuple[dict[str, int], int]:
        """The available units of plain SKUs, and the kits' generation read with them."""
        gen_key = self._kit_gen_key(0)
        if channel is None:

            def queue(pipe: Any) -> None:
                pipe.get(gen_key)
                for sku in wanted:
                    pipe.hmget(self._stock_key(sku), "available", "backorder")

            gen, *values = await self._read(map(self._shard_of, wanted), queue)
            levels = {
                sku: max(0, int(available or 0) + int(cap or 0))
                for sku, (available, cap) in zip(wanted, values, strict=True)
            }
            return levels, int(gen or 0)
        places = channel.locations
        fields = [name for place in places for name in _fields(place.name)[::3]]

        def queue_all(pipe: Any) -> None:
            pipe.get(gen_key)
            for sku in wanted:
                pipe.hmget(self._stock_key(sku), *fields)

        gen, *rows = await self._read(map(self._shard_of, wanted), queue_all)
        levels = {
            sku: sum(
                max(0, int(row[2 * j] or 0) + int(row[2 * j + 1] or 0) - place.safety_stock)
                for j, place in enumerate(places)
            )
            for sku, row in zip(wanted, rows, strict=True)
        }
        return levels, int(gen or 0)

    # ---------------------------------------------------------------- kits
    async def _current_kits(self) -> _KitBook:
        """The kits as this process knows them (read once, and again after a change)."""
        return self._kits if self._kits is not None else await self._read_kits()

    async def _read_kits(self, at_least: int = 0) -> _KitBook:
        """The kits as of generation `at_least` or later, read once for every caller waiting.

        Callers waiting share one read (and go on together, so a burst of
        first calls still goes out in one pipeline).
        """
        while self._kits is None or self._kit_gen < at_least:
            reading = self._kits_reading
            if reading is None or reading.done():
                reading = self._kits_reading = asyncio.ensure_future(self._fetch_kits(at_least))
            await asyncio.shield(reading)
        return self._kits

    async def _fetch_kits(self, at_least: int) -> None:
        gen_key = self._kit_gen_key(0)
        raw, gen = await self._read(
            [0], lambda pipe: (pipe.hgetall(self._kits_key()), pipe.get(gen_key))
        )
        kits = _KitBook(raw)
        # A shard's generation may be ahead of shard 0's (restored later): the
        # kits read now are at least as new as the change that raised it.
        self._kits, self._kit_gen = kits, max(int(gen or 0), at_least)

    async def kits(self) -> dict[str, Kit]:
        """See `KitStore.kits` (read from Redis, not from this process's copy)."""
        self._kits = None
        return dict(await self._read_kits())

    async def define_kit(
        self, sku: str, components: Sequence[LineInput], *, version: int | None = None
    ) -> Kit:
        """See `KitStore.define_kit`.

        Args:
            sku: the kit's SKU.
            components: ``(sku, quantity per kit)`` pairs or lines.
            version: the version to write (a ledger keeps the count); by
                default one more than the kit had.
        """
        sku = _input.check_sku(sku)
        parts = check_components(sku, components)
        if version is not None:
            version = _input.check_int(version, "version", minimum=1)
        pairs = json.dumps([[part.sku, part.quantity] for part in parts])
        reply = await self._kit_op("define", sku, pairs, "" if version is None else version)
        return Kit(
            sku=sku,
            components=parts,
            version=int(reply["version"]),
            updated_at=to_time(int(reply["updated"])),
        )

    async def remove_kit(self, sku: str) -> bool:
        """See `KitStore.remove_kit`."""
        reply = await self._kit_op("remove", _input.check_sku(sku), "", "")
        return bool(reply["removed"])

    async def _kit_op(self, op: str, sku: str, pairs: str, version: object) -> dict[str, Any]:
        """Run kits.lua in shard 0, then raise every other shard's generation to its."""
        keys = [self._kits_key(), self._kit_gen_key(0)]
        reply = await self._run("kits", keys, [self._bases[0], op, sku, pairs, version])
        error = reply.get("err")
        if error is not None:
            refuse_nesting(
                sku,
                nested=reply["kits"] if error == "NESTED" else (),
                used_by=int(reply["kits"]) if error == "COMPONENT" else 0,
            )
            raise BackendUnavailable(f"kit {sku}: {op} failed: {error}")
        gen = int(reply["gen"])
        for shard in range(1, self.shards):
            key = self._kit_gen_key(shard)
            await self._run("kits", [key, key], [self._bases[shard], "stamp", sku, "", gen])
        self._kits = None  # read again, with this change, on the next call
        return dict(reply)

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
        """See `ReservationStore.reserve`."""
        reservation, _made = await self.reserve_or_replay(
            lines, ttl=ttl, owner=owner, idempotency_key=idempotency_key, channel=channel
        )
        return reservation

    async def reserve_or_replay(
        self,
        lines: Sequence[LineInput],
        *,
        ttl: TTLInput,
        owner: str,
        idempotency_key: str | None = None,
        channel: Channel | None = None,
    ) -> tuple[Reservation, bool]:
        """`reserve`, also saying whether this call made the hold (False: a replay)."""
        cart = _input.check_lines(lines)
        ttl_ms = _input.check_ttl(ttl)
        owner = str(_input.check_text(owner, "owner"))
        key = _input.check_text(idempotency_key, "idempotency_key", optional=True)
        if channel is not None and not isinstance(channel, Channel):
            raise InvalidRequest(f"channel must be a Channel, got {channel!r}")
        kits = await self._current_kits()
        for _ in range(3):
            try:
                return await self._reserve_with(
                    cart, kits, ttl_ms=ttl_ms, owner=owner, key=key, channel=channel
                )
            except _KitsChanged as changed:
                kits = await self._read_kits(changed.gen)
            except OutOfStock as exc:
                if not any(line.sku in kits for line in cart):
                    raise
                raise OutOfStock(_short_in_cart(cart, kits, exc.short)) from None
        raise BackendUnavailable("the kits kept changing while this cart was reserved; retry")

    async def _reserve_with(
        self,
        cart: tuple[ReservationLine, ...],
        kits: _KitBook,
        *,
        ttl_ms: int,
        owner: str,
        key: str | None,
        channel: Channel | None,
    ) -> tuple[Reservation, bool]:
        """Reserve `cart`, its kits expanded as `kits` say (`_KitsChanged` if they are old)."""
        expansion = kits.expand(cart) if kits else _NO_KITS
        shown = expansion.shown
        units: Sequence[_Line] = expansion.units if shown else cart
        attempt = _Attempt(gen=self._kit_gen, shown=shown)
        groups: dict[int, list[_Line]] = {}
        if self.shards > 1:
            for line in units:
                groups.setdefault(self._shard_of(line.sku), []).append(line)
        home = next(iter(groups)) if groups else 0
        rid = self._new_id(home)
        if len(groups) <= 1:
            record = await self._reserve_in(
                home, rid, units, ttl_ms=ttl_ms, owner=owner, key=key, cart=cart,
                spec=_spec_of(channel), attempt=attempt,
            )  # fmt: skip
        elif channel is not None and channel.split is Split.SHIPMENT:
            record = await self._reserve_shipment(
                rid, groups, channel, ttl_ms=ttl_ms, owner=owner, key=key, cart=cart,
                attempt=attempt,
            )  # fmt: skip
        else:
            record = await self._reserve_spread(
                rid, groups, ttl_ms=ttl_ms, owner=owner, key=key, cart=cart, channel=channel,
                attempt=attempt,
            )  # fmt: skip
        if record["id"] != rid:  # an idempotent replay: the record is all we know
            await self._replicated(self._shard_of(record["id"]))
            return to_reservation(record), False
        # Without a channel the allocations are known, unless some unit was owed.
        known = channel is None and all(len(a) == 3 for a in record.get("alloc") or ())
        return _made(record, cart, key, expansion.at_default if known else None), True

    async def _reserve_in(
        self,
        shard: int,
        rid: str,
        lines: Sequence[_Line],
        *,
        ttl_ms: int,
        owner: str,
        key: str | None,
        cart: Sequence[ReservationLine],
        role: str = "single",
        parent: str = "",
        parts: Sequence[int] = (),
        spec: str = "",
        attempt: _Attempt = _PLAIN,
    ) -> _Record:
        """Run reserve.lua in one shard; return the record or raise the domain error."""
        due = self._dues[shard]
        idem = self._idempotency_key(shard, owner, key) if key is not None else due
        # Only a parent reads the whole cart and its parts (reserve.lua).
        whole = json.dumps([[line.sku, line.quantity] for line in cart]) if role == "parent" else ""
        args: list[object] = [
            self._bases[shard], rid, owner, ttl_ms, self._idempotency_ms, fingerprint(cart),
            "1" if key is not None else "0", key or "", role, parent, self._grace_ms,
            whole, json.dumps(list(parts)) if role == "parent" else "", spec, attempt.gen,
            attempt.shown,
        ]  # fmt: skip
        for line in lines:
            args += (line.sku, line.quantity)
        try:
            reply = await self._run("reserve", (due, idem), args)
        except Unreplicated as exc:
            await self._undo_unreplicated(exc.reply, shard, rid, role=role, owner=owner, key=key)
            raise _public(exc) from None
        error = reply.get("err")
        if error is None:
            record: _Record = reply["reservation"]
            return record
        _refuse_newer(reply)
        if error == "KITS_CHANGED":
            raise _KitsChanged(int(reply["gen"]))
        if error == "OUT_OF_STOCK":
            raise OutOfStock(tuple(ShortLine(s, int(r), int(a)) for s, r, a in reply["short"]))
        if error == "PURCHASE_LIMIT":
            raise PurchaseLimitExceeded(
                tuple(OverLimit(s, int(n), int(u), int(w)) for s, n, u, w in reply["over"])
            )
        if error == "IDEMPOTENCY_CONFLICT":
            raise IdempotencyConflict(str(key), reply["id"])
        if error == "IDEMPOTENCY_EXPIRED":
            raise ReservationNotFound(reply["id"])
        raise BackendUnavailable(f"reserve failed: {error}")  # DUPLICATE_ID: a uuid4 collision

    async def _undo_unreplicated(
        self, raw: Any, shard: int, rid: str, *, role: str, owner: str, key: str | None
    ) -> None:
        """Undo, best effort, the hold a reserve made but its replicas may not have.

        A hold the undo misses stays until its deadline (the sweeper returns
        its units then); a replayed hold (another call's) is left alone.
        """
        with contextlib.suppress(Exception):
            reply = _decode(raw.decode() if type(raw) is bytes else raw)[0]
            made = reply.get("reservation") if "err" not in reply else None
            if made is None or made["id"] != rid:
                return
            if role == "single":
                await self._transition_in(shard, rid, "release")
            else:  # a parent still incomplete, or a part
                await self._abort(shard, rid, owner, key if role == "parent" else None)

    async def _reserve_spread(
        self,
        rid: str,
        groups: dict[int, list[_Line]],
        *,
        cart: Sequence[ReservationLine],
        ttl_ms: int,
        owner: str,
        key: str | None,
        channel: Channel | None = None,
        attempt: _Attempt = _PLAIN,
    ) -> _Record:
        """A cart over several shards: the parent first, then each part, undone on failure."""
        available = await self.available((line.sku for line in cart), channel=channel)
        short = tuple(
            ShortLine(line.sku, line.quantity, available[line.sku])
            for line in cart
            if available[line.sku] < line.quantity
        )
        home, *others = groups
        common: dict[str, Any] = {
            "ttl_ms": ttl_ms, "owner": owner, "cart": cart, "spec": _spec_of(channel),
            "attempt": attempt,
        }  # fmt: skip
        try:
            parent = await self._reserve_in(
                home, rid, groups[home], key=key, role="parent", parts=others, **common
            )
        except OutOfStock as exc:
            raise OutOfStock(short or exc.short) from None
        if parent["id"] != rid or not parent.get("incomplete"):
            return parent  # an idempotent replay
        if short:
            await self._abort(home, rid, owner, key)
            raise OutOfStock(short)
        made: list[int] = []
        allocations: list[Any] = list(parent.get("alloc") or ())
        try:
            for shard in others:
                part = await self._reserve_in(
                    shard, f"{rid}/{shard}", groups[shard], key=None, role="part", parent=rid,
                    **common,
                )  # fmt: skip
                made.append(shard)
                allocations += part.get("alloc") or ()
        except BaseException:
            # Undo what was held; a part this misses is undone by the sweeper.
            for shard in made:
                with contextlib.suppress(Exception):
                    await self._abort(shard, f"{rid}/{shard}", owner, None)
            with contextlib.suppress(Exception):
                await self._abort(home, rid, owner, key)
            raise
        whole = json.dumps(allocations) if allocations else ""
        try:
            reply = await self._transition_in(home, rid, "complete", cart_alloc=whole)
        except NotReplicated:
            with contextlib.suppress(Exception):
                await self._call(home, rid, "release")  # its parts follow
            raise
        completed: _Record = reply["reservation"]
        return completed

    async def _reserve_shipment(
        self,
        rid: str,
        groups: dict[int, list[_Line]],
        channel: Channel,
        *,
        cart: Sequence[ReservationLine],
        ttl_ms: int,
        owner: str,
        key: str | None,
        attempt: _Attempt = _PLAIN,
    ) -> _Record:
        """A one-shipment cart over several shards: each location in turn, the whole cart there.

        Each try is all or nothing (the parts protocol), so the first location
        that holds every line wins; the error names what the best one lacked.
        """
        places = list(channel.locations)
        if channel.strategy is Strategy.MOST_STOCK:
            levels = {
                place.name: await self.available(
                    (line.sku for line in cart), channel=Channel(channel.name, [place])
                )
                for place in places
            }
            gives = {
                name: sum(min(level[line.sku], line.quantity) for line in cart)
                for name, level in levels.items()
            }
            places.sort(key=lambda place: -gives[place.name])  # stable: ties keep the order
        best: OutOfStock | None = None
        for place in places:
            alone = Channel(channel.name, [place], split=Split.LINES)
            try:
                return await self._reserve_spread(
                    rid, groups, ttl_ms=ttl_ms, owner=owner, key=key, cart=cart, channel=alone,
                    attempt=attempt,
                )  # fmt: skip
            except OutOfStock as exc:
                if best is None or len(exc.short) < len(best.short):
                    best = exc
        assert best is not None  # a channel has at least one location
        raise best

    async def _abort(self, shard: int, rid: str, owner: str, key: str | None) -> None:
        idem = self._idempotency_key(shard, owner, key) if key is not None else ""
        await self._transition_in(shard, rid, "abort", idem=idem)

    async def _transition_in(
        self,
        shard: int,
        rid: str,
        action: str,
        *,
        ttl_ms: int = 0,
        status: str = "",
        idem: str = "",
        cart_alloc: str = "",
    ) -> dict[str, Any]:
        return dict(
            await self._run(
                "transition",
                [self._due(shard), self._record_key(shard, rid)],
                [
                    self._base(shard),
                    rid,
                    action,
                    ttl_ms,
                    self._retention_ms,
                    status,
                    idem,
                    cart_alloc,
                ],
            )
        )

    async def _call(self, shard: int, rid: str, action: str, ttl_ms: int = 0) -> Reservation:
        """A transition of a reservation, its parts following, errors raised."""
        reply = await self._transition_in(shard, rid, action, ttl_ms=ttl_ms)
        error = reply.get("err")
        if error == "NOT_FOUND":
            raise ReservationNotFound(rid)
        _refuse_newer(reply)
        record = reply["reservation"]
        await self._follow(record)
        current = to_reservation(record)
        if error is None:
            return current
        if error == "EXPIRED":
            raise HoldExpired(current, action)
        if error == "INCOMPLETE":
            raise BackendUnavailable(f"reservation {rid} is still being made; retry")
        await self._replicated(shard)
        raise InvalidTransition(current, action)

    async def _replicated(self, shard: int) -> None:
        """With `replicas`, wait until what this call read in `shard` is replicated.

        A replay or a transition already made wrote nothing, so its WAIT
        may cover nothing (Redis 7.2+ counts a connection's own writes): the
        state it reports may be a refused call's, still on the master only.
        A write on the same shard, waited for, covers it.
        """
        if self.replicas:
            await self._run("sync", [self._sync_key(shard)], ())

    async def _follow(self, parent: _Record) -> None:
        """Bring a spread cart's parts to the parent's status (or deadline)."""
        status = parent["status"]
        for shard in parent.get("parts") or ():
            part = f"{parent['id']}/{shard}"
            try:
                if status == ReservationStatus.PENDING:
                    when = int(parent["expires"]) + self._grace_ms
                    await self._transition_in(shard, part, "reschedule", ttl_ms=when)
                else:
                    await self._transition_in(shard, part, "settle", status=status)
            except BackendUnavailable:
                pass  # the part is due later; the sweeper settles it then

    async def get(self, reservation_id: str) -> Reservation:
        """See `ReservationStore.get`."""
        rid = str(_input.check_text(reservation_id, "reservation_id"))
        shard = self._shard_of(rid)
        (raw,) = await self._read([shard], lambda pipe: pipe.get(self._record_key(shard, rid)))
        record = json.loads(raw) if raw is not None else None
        if record is None or record.get("parent"):
            raise ReservationNotFound(rid)
        return to_reservation(record)

    async def _transition(self, reservation_id: str, action: str, ttl_ms: int = 0) -> Reservation:
        rid = str(_input.check_text(reservation_id, "reservation_id"))
        return await self._call(self._shard_of(rid), rid, action, ttl_ms)

    async def confirm(self, reservation_id: str) -> Reservation:
        """See `ReservationStore.confirm`."""
        return await self._transition(reservation_id, "confirm")

    async def release(self, reservation_id: str) -> Reservation:
        """See `ReservationStore.release`."""
        return await self._transition(reservation_id, "release")

    async def extend(self, reservation_id: str, ttl: TTLInput) -> Reservation:
        """See `ReservationStore.extend`."""
        return await self._transition(reservation_id, "extend", _input.check_ttl(ttl))

    async def amend(
        self,
        reservation_id: str,
        lines: Sequence[LineInput],
        *,
        idempotency_key: str | None = None,
        channel: Channel | None = None,
    ) -> Reservation:
        """See `ReservationStore.amend`.

        The new cart must stay in the reservation's shard (always so with
        ``shards=1``); a cart spread over shards cannot be amended
        (`InvalidRequest`): release it and reserve again.
        """
        rid = str(_input.check_text(reservation_id, "reservation_id"))
        cart = _input.check_lines(lines)
        key = _input.check_text(idempotency_key, "idempotency_key", optional=True)
        if channel is not None and not isinstance(channel, Channel):
            raise InvalidRequest(f"channel must be a Channel, got {channel!r}")
        kits = await self._current_kits()
        for _ in range(3):
            expansion = kits.expand(cart) if kits else _NO_KITS
            reply = await self._amend_in(rid, cart, expansion, key, channel)
            if reply.get("err") != "KITS_CHANGED":
                return self._amended(reply, rid, cart=cart, kits=kits, expansion=expansion, key=key)
            kits = await self._read_kits(int(reply["gen"]))
        raise BackendUnavailable("the kits kept changing while this cart was amended; retry")

    async def _amend_in(
        self,
        rid: str,
        cart: tuple[ReservationLine, ...],
        expansion: _Expansion,
        key: str | None,
        channel: Channel | None,
    ) -> _Record:
        """Run amend.lua in the reservation's shard."""
        shard = self._shard_of(rid)
        units: Sequence[_Line] = expansion.units if expansion.shown else cart
        if any(self._shard_of(line.sku) != shard for line in units):
            await self.get(rid)  # ReservationNotFound first, for an unknown id
            raise InvalidRequest(
                f"reservation {rid}: an amended cart must keep to the shard of the "
                "reservation; release it and reserve the new cart instead"
            )
        if key is None:
            marker = self._record_key(shard, rid)
        else:
            digest = hashlib.sha256(f"{rid}\0{key}".encode()).hexdigest()[:40]
            marker = f"{self._base(shard)}amend:{digest}"
        args: list[object] = [
            self._base(shard), rid, _spec_of(channel), self._kit_gen,
            expansion.shown, fingerprint(cart), "1" if key is not None else "0",
            self._idempotency_ms, self._retention_ms,
        ]  # fmt: skip
        for line in units:
            args += (line.sku, line.quantity)
        keys = [self._due(shard), self._record_key(shard, rid), marker]
        return dict(await self._run("amend", keys, args))

    def _amended(
        self,
        reply: _Record,
        rid: str,
        *,
        cart: tuple[ReservationLine, ...],
        kits: _KitBook,
        expansion: _Expansion,
        key: str | None,
    ) -> Reservation:
        """amend.lua's answer: the amended reservation, or the domain error."""
        error = reply.get("err")
        if error is None:
            return to_reservation(reply["reservation"])
        _refuse_newer(reply)
        if error == "NOT_FOUND":
            raise ReservationNotFound(rid)
        if error == "SPREAD":
            raise InvalidRequest(
                f"reservation {rid} is spread over shards; release it and reserve the new cart"
            )
        if error == "IDEMPOTENCY_CONFLICT":
            raise IdempotencyConflict(str(key), rid)
        if error == "OUT_OF_STOCK":
            short = tuple(ShortLine(s, int(r), int(a)) for s, r, a in reply["short"])
            raise OutOfStock(_short_in_cart(cart, kits, short) if expansion.shown else short)
        if error == "PURCHASE_LIMIT":
            raise PurchaseLimitExceeded(
                tuple(OverLimit(s, int(n), int(u), int(w)) for s, n, u, w in reply["over"])
            )
        current = to_reservation(reply["reservation"])
        if error == "EXPIRED":
            raise HoldExpired(current, "amend")
        raise InvalidTransition(current, "amend")

    async def expire_due(self, limit: int = 100) -> list[Reservation]:
        """See `ReservationStore.expire_due`; `limit` applies to each shard.

        With `replicas`, a run whose expiries no replica confirmed raises
        `NotReplicated`; the holds it expired on the master are reported by
        a later run in this process once its writes are replicated (a hold
        a failover brought back pending is due, and expired again).
        """
        limit = _input.check_int(limit, "limit", minimum=1)
        expired: list[Reservation] = []
        for shard in range(self.shards):
            try:
                reply = await self._run(
                    "expire_due", [self._due(shard)], [self._base(shard), limit, self._retention_ms]
                )
            except Unreplicated as exc:
                self._keep_unreported(shard, exc.reply)
                raise _public(exc) from None
            records = reply["expired"] if reply["n"] else []
            if shard in self._unreported:
                with contextlib.suppress(BackendUnavailable):  # kept for the next run
                    records += await self._reported_late(shard, {r["id"] for r in records})
            for record in records:
                await self._follow(record)
                expired.append(to_reservation(record))
            for part in reply["parts"] if reply["p"] else ():
                await self._settle_stray(shard, part)
        return expired

    def _keep_unreported(self, shard: int, raw: Any) -> None:
        with contextlib.suppress(Exception):
            reply = _decode(raw.decode() if type(raw) is bytes else raw)[0]
            kept = self._unreported.setdefault(shard, {})
            for record in reply["expired"] if reply["n"] else ():
                if len(kept) < _UNREPORTED_MAX:  # past it, the ledger's reconcile catches up
                    kept[record["id"]] = record

    async def _reported_late(self, shard: int, seen: set[str]) -> list[_Record]:
        """The holds refused runs expired in `shard` that are EXPIRED, now replicated."""
        await self._replicated(shard)  # what those runs wrote has reached the replicas
        ids = [rid for rid in self._unreported.get(shard, {}) if rid not in seen]
        keys = [self._record_key(shard, rid) for rid in ids]
        raws = await self._read([shard], lambda pipe: [pipe.get(key) for key in keys])
        self._unreported.pop(shard, None)
        found = (json.loads(raw) for raw in raws if raw is not None)
        return [record for record in found if record.get("status") == "EXPIRED"]

    async def _settle_stray(self, shard: int, part: _Record) -> None:
        """A part past its grace: follow its parent, or undo it if the parent never was."""
        parent_id = part["parent"]
        home = self._shard_of(parent_id)
        try:
            raw = await self._redis.get(self._record_key(home, parent_id))
        except _UNREACHABLE as exc:
            raise BackendUnavailable(f"redis unreachable: {exc}") from exc
        parent = json.loads(raw) if raw is not None else None
        if parent is None:
            await self._transition_in(shard, part["id"], "abort")
        elif parent["status"] == ReservationStatus.PENDING:
            when = int(parent["expires"]) + self._grace_ms
            await self._transition_in(shard, part["id"], "reschedule", ttl_ms=when)
        else:
            await self._transition_in(shard, part["id"], "settle", status=parent["status"])

    # ------------------------------------------------------ ledger support
    async def is_hydrated(self) -> bool:
        """Whether `restore` has run on every shard since Redis was last emptied."""
        values = await self._read(
            [], lambda p: [p.exists(self._marker(s)) for s in range(self.shards)]
        )
        return all(values)

    async def restore(
        self,
        stock: Sequence[StockLevel],
        pending: Sequence[Reservation],
        *,
        marker: str,
        replayable: Sequence[Reservation] = (),
        kits: Iterable[Kit] = (),
        limits: Iterable[PurchaseLimit] = (),
        confirmed: Sequence[Reservation] = (),
        moved: Sequence[str] = (),
    ) -> bool:
        """Write stock levels, pending holds and kits from a ledger, once per shard, atomically.

        The idempotency keys of `pending` and `replayable` (settled
        reservations made with a key) are written back too, each for what is
        left of its `idempotency_ttl`: a retry with the key replays its
        reservation, whatever became of it, never makes a second hold. So are
        the purchase `limits`, with what counts against them: the units of
        `pending` and `confirmed` reservations made within each limit's window.
        The `moved` ids (moves of sold units back on sale that the ledger's
        stock already counts, applied or not) are remembered as applied
        (`return_sold`), so replaying one changes nothing in a restored shard.

        Returns False if other processes restored every shard first.
        """
        levels: dict[int, list[list[object]]] = {s: [] for s in range(self.shards)}
        records: dict[int, list[_Record]] = {s: [] for s in range(self.shards)}
        idempotency: dict[int, list[list[object]]] = {s: [] for s in range(self.shards)}
        now_ms = to_ms(dt.datetime.now(dt.UTC))
        for level in stock:
            at = "" if level.location == DEFAULT_LOCATION else level.location
            levels[self._shard_of(level.sku)].append(
                [level.sku, level.available, level.held, level.sold, at, level.backorder]
            )
        for reservation in pending:
            self._split(reservation, records)
        for reservation in (*pending, *replayable):
            self._keep_key(reservation, idempotency, now_ms)
        caps: dict[int, list[list[object]]] = {s: [] for s in range(self.shards)}
        usage: dict[int, list[list[object]]] = {s: [] for s in range(self.shards)}
        windows: dict[str, int] = {}
        for limit in limits:
            window_ms = int(limit.window.total_seconds() * 1000)
            windows[limit.sku] = window_ms
            caps[self._shard_of(limit.sku)].append([limit.sku, limit.quantity, window_ms])
        if windows:
            self._count_usage(windows, pending, confirmed, usage, now_ms)
        definitions = json.dumps(
            [[kit.sku, json.dumps(_definition(kit), separators=(",", ":"))] for kit in kits]
        )
        restored = False
        for shard in range(self.shards):
            reply = await self._run(
                "restore",
                [self._due(shard), self._marker(shard)],
                [
                    self._base(shard), marker, json.dumps(levels[shard]),
                    json.dumps(records[shard]), json.dumps(idempotency[shard]),
                    self._idempotency_ms, definitions if shard == 0 else "",
                    json.dumps(caps[shard]), json.dumps(usage[shard]), json.dumps(list(moved)),
                ],
            )  # fmt: skip
            restored |= reply in (b"RESTORED", "RESTORED")
        self._kits = None
        return restored

    def _count_usage(
        self,
        windows: dict[str, int],
        pending: Sequence[Reservation],
        confirmed: Sequence[Reservation],
        usage: dict[int, list[list[object]]],
        now_ms: int,
    ) -> None:
        """The usage entries (see reserve.lua) of the reservations that count against limits."""
        for reservation, settled in [(r, False) for r in pending] + [(r, True) for r in confirmed]:
            made = to_ms(reservation.created_at)
            home = self._shard_of(reservation.id)
            units: dict[str, int] = {}
            for held in reservation.holdings:
                if held.sku in windows:
                    units[held.sku] = units.get(held.sku, 0) + held.quantity
            for sku, quantity in units.items():
                left_ms = made + windows[sku] - now_ms
                if left_ms <= 0:
                    continue
                shard = self._shard_of(sku)
                # a pending hold's record in another shard is its part there
                rid = reservation.id if settled or shard == home else f"{reservation.id}/{shard}"
                key = f"{self._base(shard)}usage:{sku}:{reservation.owner}"
                usage[shard].append([key, rid, f"{quantity}:{made}", left_ms])

    def _split(self, reservation: Reservation, records: dict[int, list[_Record]]) -> None:
        """The records a pending reservation is kept as: one per shard it spans."""
        # A shard's record holds the units of its SKUs (a kit line's are its components').
        units: dict[int, dict[str, int]] = {}
        for held in reservation.holdings:
            here = units.setdefault(self._shard_of(held.sku), {})
            here[held.sku] = here.get(held.sku, 0) + held.quantity
        groups = {
            shard: [ReservationLine(sku=sku, quantity=qty) for sku, qty in counts.items()]
            for shard, counts in units.items()
        }
        placed: dict[int, list[Allocation]] = {}
        for allocation in reservation.allocations:
            placed.setdefault(self._shard_of(allocation.sku), []).append(allocation)
        home = self._shard_of(reservation.id)
        others = [shard for shard in groups if shard != home]
        if not others:
            records[home].append(to_record(reservation, reservation.lines, reservation.allocations))
        else:
            cart = [[line.sku, line.quantity] for line in reservation.lines]
            whole = from_allocations(reservation.allocations)
            records[home].append(
                to_record(
                    reservation, groups.get(home, []), placed.get(home, ()), cart=cart,
                    parts=others, **({"cart_alloc": whole} if whole else {}),
                )
            )  # fmt: skip
            due = to_ms(reservation.expires_at) + self._grace_ms
            for shard in others:
                part = reservation.model_copy(update={"id": f"{reservation.id}/{shard}"})
                records[shard].append(
                    to_record(
                        part, groups[shard], placed.get(shard, ()), parent=reservation.id, due=due
                    )
                )

    def _keep_key(
        self, reservation: Reservation, idempotency: dict[int, list[list[object]]], now_ms: int
    ) -> None:
        """The reservation's idempotency key, for what is left of its TTL (if anything)."""
        if not reservation.idempotency_key:
            return
        left_ms = to_ms(reservation.created_at) + self._idempotency_ms - now_ms
        if left_ms <= 0:
            return
        home = self._shard_of(reservation.id)
        key = self._idempotency_key(home, reservation.owner, reservation.idempotency_key)
        value = f"{fingerprint(reservation.lines)}|{reservation.id}"
        idempotency[home].append([key, value, left_ms])

    async def pending(self) -> list[Reservation]:
        """Every PENDING reservation in Redis (for reconciliation)."""
        found: list[Reservation] = []
        try:
            for shard in range(self.shards):
                ids = await self._redis.zrange(self._due(shard), 0, -1)
                if not ids:
                    continue
                keys = [
                    self._record_key(shard, i.decode() if isinstance(i, bytes) else i) for i in ids
                ]
                for raw in await self._redis.mget(keys):
                    record = json.loads(raw) if raw is not None else None
                    if record and not record.get("parent") and record["status"] == "PENDING":
                        found.append(to_reservation(record))
        except _UNREACHABLE as exc:
            raise BackendUnavailable(f"redis unreachable: {exc}") from exc
        return found
