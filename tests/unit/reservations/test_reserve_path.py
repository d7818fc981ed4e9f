"""The helpers of the lean reserve path: they save work, never a check."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import uuid
from typing import Any

import pytest
from fakeredis import FakeAsyncRedis, FakeServer
from redis import exceptions as redis_errors

from commercekit.errors import InvalidRequest
from commercekit.reservations import RedisReservationStore, ReservationLine, _batch, _input
from commercekit.reservations._batch import Coalescer
from commercekit.reservations._lua import Script
from commercekit.reservations._records import fingerprint, new_id


# ------------------------------------------------------------------ check_line(s)
def test_a_checked_line_is_reused() -> None:
    first = _input.check_line("CACHE-1", 2)
    assert _input.check_line("CACHE-1", 2) is first
    assert _input.check_lines([("CACHE-1", 2)]) == (first,)


@pytest.mark.parametrize("quantity", [True, 1.0, "1"])
def test_the_cache_never_answers_for_another_type(quantity: Any) -> None:
    _input.check_line("CACHE-2", 1)  # ("CACHE-2", 1) is remembered; True == 1.0 == 1
    with pytest.raises(InvalidRequest, match="line 0"):
        _input.check_lines([("CACHE-2", quantity)])


def test_a_str_subclass_is_validated_not_looked_up() -> None:
    class Sku(str):
        pass

    line = _input.check_line(Sku("CACHE-3"), 1)
    assert type(line.sku) is str
    with pytest.raises(InvalidRequest):
        _input.check_line(Sku("bad sku"), 1)


def test_an_unvalidated_line_model_is_checked() -> None:
    forged = ReservationLine.model_construct(sku="has space", quantity=0)
    with pytest.raises(InvalidRequest, match="line 1"):
        _input.check_lines([("CACHE-4", 1), forged])


def test_summed_lines_are_checked_as_one() -> None:
    assert _input.check_lines([("CACHE-5", 2), ("CACHE-6", 1), ("CACHE-5", 3)]) == (
        ReservationLine(sku="CACHE-5", quantity=5),
        ReservationLine(sku="CACHE-6", quantity=1),
    )
    with pytest.raises(InvalidRequest, match="CACHE-5"):
        _input.check_lines([("CACHE-5", 600_000), ("CACHE-5", 600_000)])


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_input, "MAX_CHECKED_LINES", 4)
    for i in range(10):
        _input.check_line(f"BOUND-{i}", 1)
        assert len(_input._checked) <= 4


# ------------------------------------------------------------------ fingerprint
@pytest.mark.parametrize(
    "pairs",
    [
        [("A", 1)],
        [("b", 2), ("A", 3), ("a-1/2:3.4_5", 1_000_000)],
        # Not valid SKUs (forged models): these take the json.dumps path.
        [('qu"ote', 1), ("back\\slash", 2), ("é", 3), ("tab\t", 4), ("del\x7f", 5)],
    ],
)
def test_the_fingerprint_is_the_json_one(pairs: list[tuple[str, int]]) -> None:
    lines = [ReservationLine.model_construct(sku=s, quantity=q) for s, q in pairs]
    canonical = json.dumps(sorted(pairs))
    expected = hashlib.sha256(canonical.encode()).hexdigest()[:32]
    assert fingerprint(lines) == expected
    assert fingerprint(reversed(lines)) == expected


# ------------------------------------------------------------------ new_id
def test_new_ids_are_random_uuid4_text() -> None:
    ids = {new_id() for _ in range(2000)}
    assert len(ids) == 2000
    for rid in list(ids)[:200]:
        parsed = uuid.UUID(rid)
        assert str(parsed) == rid
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


# ------------------------------------------------------------------ packing
@pytest.mark.parametrize(
    "args",
    [
        ["base:{s0}:", "id", "ówner", 900_000, -3, "", b"raw\r\nbytes"],
        [0, "x" * 300, 1.5, 0.1 + 0.2, True],
    ],
)
def test_packing_with_and_without_hiredis_agree(args: list[object]) -> None:
    script = Script("reserve", False)
    keys = ["k:{s0}:due", "k:{s0}:due"]
    packed = _batch._pack_python(script, keys, args)
    items = [b"EVALSHA", script.sha.encode(), b"2", *(k.encode() for k in keys)]
    items += [a if isinstance(a, bytes) else str(a).encode() for a in args]
    assert packed == b"*%d\r\n" % len(items) + b"".join(
        b"$%d\r\n%s\r\n" % (len(i), i) for i in items
    )
    assert _batch._pack(script, keys, args) == packed


def test_packing_falls_back_for_arguments_hiredis_refuses() -> None:
    class Odd:
        def __str__(self) -> str:
            return "odd"

    script = Script("reserve", False)
    assert _batch._pack(script, [], [Odd()]) == _batch._pack(script, [], ["odd"])


# ------------------------------------------------------------------ reading replies
class _Conn:
    """Replies as redis-py's connection gives them; None stands for a reply that never comes."""

    def __init__(self, replies: list[Any], socket_timeout: float | None) -> None:
        self.replies = replies
        self.socket_timeout = socket_timeout
        self.timeouts: list[float | None] = []

    async def read_response(self, **options: Any) -> Any:
        self.timeouts.append(options.get("timeout"))
        reply = self.replies.pop(0)
        if reply is None:
            await asyncio.sleep(3600)
        if isinstance(reply, Exception):
            raise reply
        return reply


async def test_error_replies_take_their_place() -> None:
    error = redis_errors.ResponseError("boom")
    conn = _Conn([b"1", error, b"3"], socket_timeout=5)
    assert await _batch._read_replies(conn, 3) == [b"1", error, b"3"]
    assert conn.timeouts == [math.inf] * 3  # no timer per reply: one for the batch


async def test_a_silent_server_times_out_the_batch() -> None:
    conn = _Conn([b"1", None], socket_timeout=0.05)
    with pytest.raises(redis_errors.TimeoutError, match="2 pipelined replies"):
        await asyncio.wait_for(_batch._read_replies(conn, 2), timeout=5)


async def test_without_a_socket_timeout_replies_are_awaited() -> None:
    conn = _Conn([b"1", b"2"], socket_timeout=None)
    assert await _batch._read_replies(conn, 2) == [b"1", b"2"]


# ------------------------------------------------------------------ Coalescer.submit
async def test_a_cancelled_caller_is_skipped() -> None:
    async def flush(items: list[int]) -> list[int]:
        return items

    batch: Coalescer[int, int] = Coalescer(flush)
    kept, dropped = batch.submit(1), batch.submit(2)
    dropped.cancel()
    assert await kept == 1
    assert dropped.cancelled()


# ------------------------------------------------------------------ the made reservation
@pytest.mark.parametrize("shards", [1, 8])
@pytest.mark.parametrize("key", [None, "k1"])
async def test_a_new_hold_reads_back_equal(shards: int, key: str | None) -> None:
    """What reserve builds without parsing the lines is what get() reads from Redis."""
    client = FakeAsyncRedis(server=FakeServer())
    store = RedisReservationStore(client, prefix="made", shards=shards, pipeline=True)
    skus = [f"MADE-{i}" for i in range(6)]
    for sku in skus:
        await store.set_stock(sku, 10)
    cart = [(skus[3], 2), (skus[0], 1), (skus[5], 1), (skus[3], 1)]
    hold, made = await store.reserve_or_replay(cart, ttl=60, owner="u1", idempotency_key=key)
    assert made
    assert [(line.sku, line.quantity) for line in hold.lines] == [
        (skus[3], 3),
        (skus[0], 1),
        (skus[5], 1),
    ]
    assert hold == await store.get(hold.id)
    if key is not None:
        again, made = await store.reserve_or_replay(cart, ttl=60, owner="u1", idempotency_key=key)
        assert (again, made) == (hold, False)
    await client.aclose()
