"""The ceiling: ``redis-benchmark`` calling the same reserve script by EVALSHA."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis

from commercekit.reservations._lua import script_source
from commercekit.reservations._records import fingerprint
from commercekit.reservations.models import ReservationLine

_BASE = "rb:{s0}:"
_SKU = "HOT"
# __rand_int__ draws ids below this (redis-benchmark parses -r as a C int: keep it small).
_IDS = 100_000_000
# What the store sends for a one-line cart of one unit of _SKU (a single-shard cart
# sends no cart or parts JSON: only a parent of a cart spread over shards reads them).
_FINGERPRINT = fingerprint([ReservationLine(sku=_SKU, quantity=1)])


async def run_redis_benchmark(
    url: str, *, clients: int = 64, requests: int = 200_000
) -> dict[str, Any]:
    """Run reserve.lua from `clients` connections of redis-benchmark; its requests/s and latencies.

    The hot SKU has stock that never runs out; each call makes a new hold with a random id
    (``__rand_int__``), exactly the call `RedisReservationStore.reserve` makes for one line.
    """
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return {"available": False, "reason": "redis-benchmark is not on PATH"}
    parts = urlsplit(url)
    client = aioredis.from_url(url)
    try:
        await client.flushdb()
        sha = await client.script_load(script_source("reserve", False))
        stock_key = f"{_BASE}stock:{_SKU}"
        await client.hset(stock_key, mapping={"available": 10**12, "held": 0, "sold": 0})
        command = [
            binary, "-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 6379),
            "-c", str(clients), "-n", str(requests), "-r", str(_IDS), "--csv",
            "EVALSHA", sha, "2", f"{_BASE}due", f"{_BASE}due",
            _BASE, "rb-__rand_int__", "bench", "900000", "86400000", _FINGERPRINT, "0", "",
            "single", "", "30000", "", "", _SKU, "1",
        ]  # fmt: skip
        done = await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, check=False, timeout=600
        )
        held = int(await client.hget(stock_key, "held") or 0)
    finally:
        await client.flushdb()
        await client.aclose()
    # The test name is the command line, quotes unescaped: read the numbers from the end.
    lines = [line for line in done.stdout.splitlines() if line.startswith('"EVALSHA')]
    row = ["", *re.findall(r'"([0-9.]+)"', lines[-1])[-7:]] if lines else []
    if done.returncode != 0 or len(row) != 8:
        return {"available": False, "reason": (done.stderr or done.stdout).strip()[-500:]}
    return {
        "available": True,
        "clients": clients,
        "requests": requests,
        "holds_made": held,
        "ops_per_s": float(row[1]),
        "p50_ms": float(row[4]),
        "p95_ms": float(row[5]),
        "p99_ms": float(row[6]),
        "command": f"redis-benchmark -c {clients} -n {requests} -r {_IDS} EVALSHA <reserve sha> "
        "2 <due> <due> <base> rb-__rand_int__ <the reserve arguments> HOT 1",
    }
