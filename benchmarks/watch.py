"""``python -m benchmarks.watch``: how fast `StockWatch` announces the stock journal.

On a PostgreSQL of the test harness, `--rows` journal rows of holds (one
unit each, over `--skus` SKUs, each first stocked by a ``set`` row) are
written straight into the journal; then `StockWatch.run_once(limit=--limit)`
runs until none is left. It prints the rows per second and the Python CPU
per row (``time.process_time``); ``--out`` writes them as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import create_async_engine

from commercekit.events import Outbox
from commercekit.reservations.ledger import JournalRow
from commercekit.reservations.watch import StockWatch
from commercekit.sql import migrate
from commercekit.testing.servers import PostgresServer


def journal(rows: int, skus: int) -> list[dict[str, Any]]:
    """A stock row per SKU, then `rows` holds of one unit, the SKUs in turn."""
    now = dt.datetime.now(dt.UTC)
    stocked = [
        {"at": now, "sku": f"S{n}", "location": "default", "reason": "set", "quantity": rows,
         "source": None, "target": "available"}
        for n in range(skus)
    ]  # fmt: skip
    held = [
        {"at": now, "sku": f"S{n % skus}", "location": "default", "reason": "reserve",
         "reference": f"r{n}", "actor": "u", "quantity": 1, "source": "available",
         "target": "held"}
        for n in range(rows)
    ]  # fmt: skip
    return stocked + held


async def measure(url: str, rows: int, skus: int, limit: int) -> dict[str, Any]:
    """Write the journal at `url`, announce it all; what that took."""
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        await migrate(engine)
        written = journal(rows, skus)
        async with engine.begin() as conn:
            for start in range(0, len(written), 5000):
                await conn.execute(insert(JournalRow), written[start : start + 5000])
        watch = StockWatch(engine, Outbox())
        wall, cpu, announced = time.perf_counter(), time.process_time(), 0
        while made := await watch.run_once(limit=limit):
            announced += made
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        await engine.dispose()
    return {
        "rows": announced,
        "limit": limit,
        "rows_per_s": announced / wall,
        "cpu_us_per_row": 1e6 * cpu / announced,
    }


def main() -> None:
    """Parse the arguments, run on a throw-away PostgreSQL, print (and write) the result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--skus", type=int, default=50)
    parser.add_argument("--limit", type=int, default=2000, help="rows per run_once")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, PostgresServer(Path(folder)) as server:
        result = asyncio.run(
            measure(server.create_database("watch"), args.rows, args.skus, args.limit)
        )
    print(
        f"{result['rows']:,} rows, {args.limit} a run: {result['rows_per_s']:,.0f} rows/s, "
        f"{result['cpu_us_per_row']:.1f} us of Python CPU per row"
    )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
