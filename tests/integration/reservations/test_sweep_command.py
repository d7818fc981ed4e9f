"""``commercekit sweep`` expires due holds of a real Redis from the shell."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

import redis.asyncio as aioredis

from commercekit.reservations import RedisReservationStore
from commercekit.testing.servers import RedisServer


async def test_sweep_once_expires_due_holds_and_prints_each(redis_server: RedisServer) -> None:
    prefix = f"cli{uuid.uuid4().hex[:6]}"
    client = aioredis.from_url(redis_server.url)
    store = RedisReservationStore(client, prefix=prefix)
    await store.set_stock("A", 5)
    due = [await store.reserve([("A", 1)], ttl=0.05, owner=f"u{i}") for i in range(3)]
    kept = await store.reserve([("A", 1)], ttl=60, owner="u9")
    await asyncio.sleep(0.1)

    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "commercekit", "sweep", "--redis-url", redis_server.url,
         "--prefix", prefix, "--once", "--batch-size", "2"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip

    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(p["id"] for p in printed) == sorted(r.id for r in due)
    assert {p["event"] for p in printed} == {"reservation.expired"}
    level = await store.stock("A")
    assert (level.available, level.held) == (4, 1)
    assert (await store.get(kept.id)).status.value == "PENDING"
    await client.aclose()
