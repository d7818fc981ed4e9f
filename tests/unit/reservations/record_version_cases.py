"""Record versions, run on fakeredis (unit) and on a real Redis (integration).

Each case takes a Redis client and a fresh key prefix. A rolling deploy puts
replicas of two releases on one Redis: the newer reads every older record,
the older leaves a newer record alone (nothing changed, a retryable error).
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import pytest

from commercekit.errors import UnsupportedRecordVersion
from commercekit.reservations import Channel, RedisReservationStore, ReservationStatus
from commercekit.reservations._records import RECORD_VERSION

NEWER = RECORD_VERSION + 1
PLAIN = 1
"""The version of a record without allocations: the oldest that reads it right."""


def lua_record_version() -> int:
    source = (resources.files("commercekit.reservations") / "lua" / "_lib.lua").read_text()
    (value,) = re.findall(r"^local RECORD_VERSION = (\d+)$", source, flags=re.MULTILINE)
    return int(value)


async def record(client: Any, store: RedisReservationStore, rid: str, shard: int = 0) -> Any:
    raw = await client.get(store._record_key(shard, rid))
    return None if raw is None else json.loads(raw)


async def overwrite(client: Any, store: RedisReservationStore, rid: str, **change: Any) -> None:
    """Rewrite a record as another release would have written it."""
    rec = await record(client, store, rid)
    rec.update(change)
    rec = {k: v for k, v in rec.items() if v is not None}
    await client.set(store._record_key(0, rid), json.dumps(rec))
    if "expires" in change:
        await client.zadd(store._due(0), {rid: change["expires"]})


async def level(store: RedisReservationStore, sku: str) -> tuple[int, int, int]:
    stock = await store.stock(sku)
    return stock.available, stock.held, stock.sold


async def every_script_writes_the_version(client: Any, prefix: str) -> None:
    store = RedisReservationStore(client, prefix=prefix)
    await store.set_stock("sku-a", 10)
    confirmed = await store.reserve([("sku-a", 1)], ttl=60, owner="o")
    assert (await record(client, store, confirmed.id))["v"] == PLAIN
    await store.extend(confirmed.id, 120)
    assert (await record(client, store, confirmed.id))["v"] == PLAIN
    await store.confirm(confirmed.id)
    assert (await record(client, store, confirmed.id))["v"] == PLAIN
    released = await store.reserve([("sku-a", 1)], ttl=60, owner="o", idempotency_key="k")
    await store.release(released.id)
    assert (await record(client, store, released.id))["v"] == PLAIN
    # Allocated to locations: a version-1 release could not return the units right.
    await store.set_stock("sku-a", 3, location="east")
    placed = await store.reserve([("sku-a", 2)], ttl=60, owner="o", channel=Channel("c", ["east"]))
    assert (await record(client, store, placed.id))["v"] == 2
    await store.release(placed.id)
    assert (await record(client, store, placed.id))["v"] == 2
    # Units on backorder: a version-2 release could not read the allocations' marks.
    await store.set_stock("sku-b", 0)
    await store.set_backorder("sku-b", 2)
    owed = await store.reserve([("sku-b", 1)], ttl=60, owner="o")
    assert (await record(client, store, owed.id))["v"] == RECORD_VERSION == 3
    await store.confirm(owed.id)
    assert (await record(client, store, owed.id))["v"] == RECORD_VERSION

    # Sharded: a spread cart's parent and parts, and their settlement.
    sharded = RedisReservationStore(client, prefix=prefix + "s", shards=4)
    skus = [f"sku-{i}" for i in range(8)]
    for sku in skus:
        await sharded.set_stock(sku, 5)
    cart = await sharded.reserve([(sku, 1) for sku in skus], ttl=60, owner="o")
    keys = [k async for k in client.scan_iter(match=f"{prefix}s:*res:*")]
    assert len(keys) > 1  # the parent and its parts
    for key in keys:
        assert json.loads(await client.get(key))["v"] == PLAIN, key
    await sharded.confirm(cart.id)
    for key in keys:
        assert json.loads(await client.get(key))["v"] == PLAIN, key

    # Restore writes what the ledger kept through the same script helper.
    await client.delete(*[k async for k in client.scan_iter(match=f"{prefix}:*")])  # lost
    restored = RedisReservationStore(client, prefix=prefix, guarded=True)
    pending = confirmed.model_copy(update={"status": ReservationStatus.PENDING})
    await restored.restore([], [pending], marker="m")
    assert (await record(client, restored, pending.id))["v"] == PLAIN
    assert (await restored.get(pending.id)).status is ReservationStatus.PENDING


async def version_0_records_are_read(client: Any, prefix: str) -> None:
    """A record from before versions (no ``v``) works for every operation."""
    store = RedisReservationStore(client, prefix=prefix)
    await store.set_stock("sku-a", 10)
    kept = await store.reserve([("sku-a", 2)], ttl=60, owner="o", idempotency_key="k")
    await overwrite(client, store, kept.id, v=None)
    assert "v" not in await record(client, store, kept.id)
    assert await store.get(kept.id) == kept
    replay = await store.reserve([("sku-a", 2)], ttl=60, owner="o", idempotency_key="k")
    assert replay.id == kept.id
    extended = await store.extend(kept.id, 120)
    assert extended.expires_at > kept.expires_at
    confirmed = await store.confirm(kept.id)
    assert confirmed.status is ReservationStatus.CONFIRMED
    assert await level(store, "sku-a") == (8, 0, 2)
    # Rewritten by this release, the record is stamped with a version.
    assert (await record(client, store, kept.id))["v"] == PLAIN

    due = await store.reserve([("sku-a", 3)], ttl=60, owner="o")
    await overwrite(client, store, due.id, v=None, expires=0)
    (expired,) = await store.expire_due()
    assert expired.id == due.id
    assert expired.status is ReservationStatus.EXPIRED
    assert await level(store, "sku-a") == (8, 0, 2)


async def newer_records_are_left_alone(client: Any, prefix: str) -> None:
    """A newer release's record: every call refuses it, retryable, and changes nothing."""
    store = RedisReservationStore(client, prefix=prefix)
    await store.set_stock("sku-a", 10)
    hold = await store.reserve([("sku-a", 2)], ttl=60, owner="o", idempotency_key="k")
    await overwrite(client, store, hold.id, v=NEWER, expires=0)  # due, too
    before = await record(client, store, hold.id)

    calls = {
        "get": lambda: store.get(hold.id),
        "confirm": lambda: store.confirm(hold.id),
        "release": lambda: store.release(hold.id),
        "extend": lambda: store.extend(hold.id, 60),
        "replay": lambda: store.reserve([("sku-a", 2)], ttl=60, owner="o", idempotency_key="k"),
    }
    for name, call in calls.items():
        with pytest.raises(UnsupportedRecordVersion) as refused:
            await call()
        assert refused.value.version == NEWER, name
        assert refused.value.supported == RECORD_VERSION, name
        assert refused.value.reservation_id == hold.id, name
    assert await store.expire_due() == []
    assert await record(client, store, hold.id) == before
    assert await level(store, "sku-a") == (8, 2, 0)
    assert await client.zscore(store._due(0), hold.id) is not None  # left for the newer sweeper
