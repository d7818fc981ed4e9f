"""`RedisReservationStore`: every mutation is one Lua script, run by SHA.

The scripts live in ``commercekit/reservations/lua/`` with their KEYS, ARGV
and replies documented at the top. They run the same on Redis 7, on Redis
Cluster (every key of a store shares one hash tag) and on fakeredis with
Lua (the embedded mode), so there is one implementation of the reservation
logic. Redis must not evict keys (``maxmemory-policy noeviction``, the
default): a pending hold never expires by itself, only by a transition.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any

from commercekit.errors import (
    BackendUnavailable,
    IdempotencyConflict,
    InvalidRequest,
    InvalidTransition,
    MissingExtraError,
    OutOfStock,
    RedisDataLost,
    ReservationExpired,
    ReservationNotFound,
    ShortLine,
    StockConflict,
)
from commercekit.reservations import _input
from commercekit.reservations.models import (
    Reservation,
    ReservationLine,
    ReservationStatus,
    StockLevel,
)
from commercekit.reservations.store import LineInput, TTLInput

try:
    from redis import exceptions as redis_errors
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtraError("redis", __name__) from exc

__all__ = ["RedisReservationStore"]

_UNREACHABLE = (redis_errors.ConnectionError, redis_errors.TimeoutError)
_LEVEL = ("available", "held", "sold")


_SCRIPTS = ("reserve", "transition", "expire_due", "stock", "restore")


@cache
def _script_source(name: str, guarded: bool) -> str:
    lua = resources.files(__package__) / "lua"
    flag = "local GUARDED = true\n" if guarded else "local GUARDED = false\n"
    return flag + (lua / "_lib.lua").read_text() + "\n" + (lua / f"{name}.lua").read_text()


class _Script:
    """One Lua script: called by SHA, loaded again when Redis answers NOSCRIPT."""

    def __init__(self, name: str, guarded: bool) -> None:
        self.name = name
        self.source = _script_source(name, guarded)
        self.sha = hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()
        self._loading = asyncio.Lock()
        self._loads = 0

    async def __call__(self, client: Any, keys: Sequence[str], args: Sequence[object]) -> Any:
        loads = self._loads
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except redis_errors.NoScriptError:
            # Many calls in flight all miss at once: one loads, the others wait.
            async with self._loading:
                if self._loads == loads:
                    await client.script_load(self.source)
                    self._loads += 1
            return await client.evalsha(self.sha, len(keys), *keys, *args)


def _time(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


def _reservation(record: Mapping[str, Any]) -> Reservation:
    return Reservation(
        id=record["id"],
        status=ReservationStatus(record["status"]),
        owner=record["owner"],
        lines=tuple(ReservationLine(sku=sku, quantity=int(qty)) for sku, qty in record["lines"]),
        created_at=_time(int(record["created"])),
        updated_at=_time(int(record["updated"])),
        expires_at=_time(int(record["expires"])),
        idempotency_key=record.get("idem") or None,
    )


def _fingerprint(lines: Iterable[ReservationLine]) -> str:
    """What an idempotency key remembers of a cart: its merged lines, in any order."""
    canonical = json.dumps(sorted((line.sku, line.quantity) for line in lines))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _ms(moment: dt.datetime) -> int:
    return round(moment.timestamp() * 1000)


def _record(reservation: Reservation) -> dict[str, Any]:
    return {
        "id": reservation.id,
        "status": reservation.status.value,
        "owner": reservation.owner,
        "lines": [[line.sku, line.quantity] for line in reservation.lines],
        "created": _ms(reservation.created_at),
        "updated": _ms(reservation.updated_at),
        "expires": _ms(reservation.expires_at),
        "idem": reservation.idempotency_key or "",
        "fp": _fingerprint(reservation.lines),
    }


class RedisReservationStore:
    """A `ReservationStore` on Redis (redis-py asyncio), Redis Cluster or fakeredis.

    Args:
        redis: a ``redis.asyncio.Redis`` (or ``RedisCluster``, or fakeredis's
            ``FakeAsyncRedis``) client.
        prefix: namespace of every key, so several stores share one Redis.
        retention: how long a terminal reservation stays readable.
        idempotency_ttl: how long an idempotency key replays its reservation.
        guarded: refuse to act (`RedisDataLost`) until `restore` has run on
            this Redis; set by `DurableReservations`, which keeps a ledger to
            restore from after a flush or an empty restart.
    """

    def __init__(
        self,
        redis: Any,
        *,
        prefix: str = "commercekit",
        retention: dt.timedelta = dt.timedelta(days=7),
        idempotency_ttl: dt.timedelta = dt.timedelta(days=1),
        guarded: bool = False,
    ) -> None:
        if not prefix or any(c in prefix for c in "{}"):
            raise InvalidRequest(f"prefix must be non-empty and without braces: {prefix!r}")
        self._redis = redis
        self.prefix = prefix
        # One hash tag per store: all its keys live in one cluster slot, so
        # each script is atomic on Redis Cluster as on a single Redis.
        self._base = f"{prefix}:{{0}}:"
        self._due = self._base + "due"
        self._retention_ms = int(retention.total_seconds() * 1000)
        self._idempotency_ms = int(idempotency_ttl.total_seconds() * 1000)
        self.guarded = guarded
        self._scripts = {name: _Script(name, guarded) for name in _SCRIPTS}
        self._loading = asyncio.Lock()
        self._loaded = False

    # ----------------------------------------------------------- plumbing
    async def _run(self, name: str, keys: Sequence[str], args: Sequence[object]) -> Any:
        if not self._loaded:
            await self.load_scripts()
        try:
            raw = await self._scripts[name](self._redis, keys, args)
        except _UNREACHABLE as exc:
            raise BackendUnavailable(f"redis unreachable during {name}: {exc}") from exc
        except redis_errors.ResponseError as exc:
            if "NOTHYDRATED" in str(exc):
                raise RedisDataLost(str(exc)) from None
            raise
        return json.loads(raw)

    def _stock_key(self, sku: str) -> str:
        return f"{self._base}stock:{sku}"

    def _record_key(self, reservation_id: str) -> str:
        return f"{self._base}res:{reservation_id}"

    def _idempotency_key(self, owner: str, key: str) -> str:
        digest = hashlib.sha256(f"{owner}\0{key}".encode()).hexdigest()[:40]
        return f"{self._base}idem:{digest}"

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

    # -------------------------------------------------------------- stock
    async def _stock_op(self, sku: str, op: str, amount: int) -> StockLevel:
        reply = await self._run("stock", [self._stock_key(sku)], [op, amount, self._base])
        if "err" in reply:
            level = f"available {reply['available']}, held {reply['held']}"
            raise StockConflict(f"cannot {op} {sku} by {amount}: {level}")
        return StockLevel(
            sku=sku, available=reply["available"], held=reply["held"], sold=reply["sold"]
        )

    async def set_stock(self, sku: str, on_hand: int) -> StockLevel:
        """See `ReservationStore.set_stock`."""
        sku = _input.check_sku(sku)
        return await self._stock_op(sku, "set", _input.check_int(on_hand, "on_hand", minimum=0))

    async def restock(self, sku: str, quantity: int) -> StockLevel:
        """See `ReservationStore.restock`."""
        sku = _input.check_sku(sku)
        return await self._stock_op(
            sku, "restock", _input.check_int(quantity, "quantity", minimum=1)
        )

    async def adjust(self, sku: str, delta: int) -> StockLevel:
        """See `ReservationStore.adjust`."""
        sku = _input.check_sku(sku)
        return await self._stock_op(sku, "adjust", _input.check_int(delta, "delta"))

    async def stock(self, sku: str) -> StockLevel:
        """See `ReservationStore.stock`."""
        sku = _input.check_sku(sku)
        (values,) = await self._read(lambda pipe: pipe.hmget(self._stock_key(sku), *_LEVEL))
        available, held, sold = (int(v or 0) for v in values)
        return StockLevel(sku=sku, available=available, held=held, sold=sold)

    async def available(self, skus: Iterable[str]) -> dict[str, int]:
        """See `ReservationStore.available`."""
        wanted = list(dict.fromkeys(_input.check_sku(sku) for sku in skus))
        if not wanted:
            return {}

        def queue(pipe: Any) -> None:
            for sku in wanted:
                pipe.hget(self._stock_key(sku), "available")

        values = await self._read(queue)
        return {sku: int(value or 0) for sku, value in zip(wanted, values, strict=True)}

    async def _read(self, queue: Callable[[Any], object]) -> list[Any]:
        """Run reads in one round trip; a guarded store also checks Redis still has its data."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                if self.guarded:
                    pipe.exists(self._base + "hydrated")
                queue(pipe)
                values: list[Any] = await pipe.execute()
        except _UNREACHABLE as exc:
            raise BackendUnavailable(f"redis unreachable: {exc}") from exc
        if self.guarded:
            if not values[0]:
                raise RedisDataLost("redis lost its reservation data; restore it from the ledger")
            return values[1:]
        return values

    # -------------------------------------------------------- reservations
    async def reserve(
        self,
        lines: Sequence[LineInput],
        *,
        ttl: TTLInput,
        owner: str,
        idempotency_key: str | None = None,
    ) -> Reservation:
        """See `ReservationStore.reserve`."""
        cart = _input.check_lines(lines)
        ttl_ms = _input.check_ttl(ttl)
        owner = str(_input.check_text(owner, "owner"))
        key = _input.check_text(idempotency_key, "idempotency_key", optional=True)
        fingerprint = _fingerprint(cart)
        idem_key = self._idempotency_key(owner, key) if key is not None else self._due
        pairs: list[object] = []
        for line in cart:
            pairs += [line.sku, line.quantity]
        reply = await self._run(
            "reserve",
            [self._due, idem_key],
            [
                self._base,
                str(uuid.uuid4()),
                owner,
                ttl_ms,
                self._idempotency_ms,
                fingerprint,
                "1" if key is not None else "0",
                key or "",
                *pairs,
            ],
        )
        error = reply.get("err")
        if error is None:
            return _reservation(reply["reservation"])
        if error == "OUT_OF_STOCK":
            raise OutOfStock(tuple(ShortLine(s, int(r), int(a)) for s, r, a in reply["short"]))
        if error == "IDEMPOTENCY_CONFLICT":
            raise IdempotencyConflict(str(key), reply["id"])
        if error == "IDEMPOTENCY_EXPIRED":
            raise ReservationNotFound(reply["id"])
        raise BackendUnavailable(f"reserve failed: {error}")  # DUPLICATE_ID: a uuid4 collision

    async def get(self, reservation_id: str) -> Reservation:
        """See `ReservationStore.get`."""
        rid = str(_input.check_text(reservation_id, "reservation_id"))
        (raw,) = await self._read(lambda pipe: pipe.get(self._record_key(rid)))
        if raw is None:
            raise ReservationNotFound(rid)
        return _reservation(json.loads(raw))

    async def _transition(self, reservation_id: str, action: str, ttl_ms: int = 0) -> Reservation:
        rid = str(_input.check_text(reservation_id, "reservation_id"))
        reply = await self._run(
            "transition",
            [self._due, self._record_key(rid)],
            [self._base, rid, action, ttl_ms, self._retention_ms],
        )
        error = reply.get("err")
        if error is None:
            return _reservation(reply["reservation"])
        if error == "NOT_FOUND":
            raise ReservationNotFound(rid)
        current = _reservation(reply["reservation"])
        if error == "EXPIRED":
            raise ReservationExpired(current, action)
        raise InvalidTransition(current, action)

    async def confirm(self, reservation_id: str) -> Reservation:
        """See `ReservationStore.confirm`."""
        return await self._transition(reservation_id, "confirm")

    async def release(self, reservation_id: str) -> Reservation:
        """See `ReservationStore.release`."""
        return await self._transition(reservation_id, "release")

    async def extend(self, reservation_id: str, ttl: TTLInput) -> Reservation:
        """See `ReservationStore.extend`."""
        return await self._transition(reservation_id, "extend", _input.check_ttl(ttl))

    async def expire_due(self, limit: int = 100) -> list[Reservation]:
        """See `ReservationStore.expire_due`."""
        limit = _input.check_int(limit, "limit", minimum=1)
        records = await self._run(
            "expire_due", [self._due], [self._base, limit, self._retention_ms]
        )
        return [_reservation(record) for record in records]

    # ------------------------------------------------------ ledger support
    async def is_hydrated(self) -> bool:
        """Whether `restore` has run on this Redis since it was last emptied."""
        try:
            return bool(await self._redis.exists(self._base + "hydrated"))
        except _UNREACHABLE as exc:
            raise BackendUnavailable(f"redis unreachable: {exc}") from exc

    async def restore(
        self, stock: Sequence[StockLevel], pending: Sequence[Reservation], *, marker: str
    ) -> bool:
        """Write stock levels and pending holds from a ledger, once, atomically.

        Returns False if another process restored this Redis first.
        """
        stock_rows = [[s.sku, s.available, s.held, s.sold] for s in stock]
        records = [_record(r) for r in pending]
        idempotency = [
            [self._idempotency_key(r.owner, r.idempotency_key), f"{_fingerprint(r.lines)}|{r.id}"]
            for r in pending
            if r.idempotency_key
        ]
        try:
            reply = await self._scripts["restore"](
                self._redis,
                [self._due, self._base + "hydrated"],
                [
                    self._base,
                    marker,
                    json.dumps(stock_rows),
                    json.dumps(records),
                    json.dumps(idempotency),
                    self._idempotency_ms,
                ],
            )
        except _UNREACHABLE as exc:
            raise BackendUnavailable(f"redis unreachable during restore: {exc}") from exc
        return bool(reply in (b"RESTORED", "RESTORED"))

    async def pending(self) -> list[Reservation]:
        """Every PENDING reservation in Redis (for reconciliation)."""
        try:
            ids = await self._redis.zrange(self._due, 0, -1)
            if not ids:
                return []
            keys = [self._record_key(i.decode() if isinstance(i, bytes) else i) for i in ids]
            raws = await self._redis.mget(keys)
        except _UNREACHABLE as exc:
            raise BackendUnavailable(f"redis unreachable: {exc}") from exc
        found = (_reservation(json.loads(raw)) for raw in raws if raw is not None)
        return [r for r in found if r.status is ReservationStatus.PENDING]
