"""``python -m benchmarks.watch``: how fast `StockWatch` announces the stock journal.

On a PostgreSQL of the test harness, `--rows` journal rows of holds (one
unit each, over `--skus` SKUs, each first stocked by a ``set`` row) are
written straight into the journal; then `StockWatch.run_once(limit=--limit)`
runs until none is left. It prints the rows per second, the Python CPU per
row (``time.process_time``), PostgreSQL's CPU per row (its server and
backends), and how many bytes the journal (its table and indexes) grew by
while it was announced; ``--out`` writes them as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import create_async_engine

from benchmarks.http import process_cpu_seconds
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


_SIZE = text("SELECT pg_total_relation_size('commercekit_stock_journal')")


async def measure(
    url: str, rows: int, skus: int, limit: int, server_cpu: Callable[[], float]
) -> dict[str, Any]:
    """Write the journal at `url`, announce it all; what that took (`server_cpu`: seconds)."""
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        await migrate(engine)
        written = journal(rows, skus)
        async with engine.begin() as conn:
            for start in range(0, len(written), 5000):
                await conn.execute(insert(JournalRow), written[start : start + 5000])
        async with engine.connect() as conn:
            size = int(await conn.scalar(_SIZE) or 0)
        watch = StockWatch(engine, Outbox())
        wall, cpu, announced = time.perf_counter(), time.process_time(), 0
        server = server_cpu()
        while made := await watch.run_once(limit=limit):
            announced += made
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        server = server_cpu() - server
        async with engine.connect() as conn:
            grown = int(await conn.scalar(_SIZE) or 0) - size
    finally:
        await engine.dispose()
    return {
        "rows": announced,
        "limit": limit,
        "rows_per_s": announced / wall,
        "cpu_us_per_row": 1e6 * cpu / announced,
        "postgres_cpu_us_per_row": 1e6 * server / announced,
        "journal_grew_bytes": grown,
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
        pid = server.pid
        result = asyncio.run(
            measure(
                server.create_database("watch"),
                args.rows,
                args.skus,
                args.limit,
                lambda: process_cpu_seconds([] if pid is None else [pid]),
            )
        )
    print(
        f"{result['rows']:,} rows, {args.limit} a run: {result['rows_per_s']:,.0f} rows/s, "
        f"{result['cpu_us_per_row']:.1f} us of Python CPU and "
        f"{result['postgres_cpu_us_per_row']:.1f} us of PostgreSQL CPU per row; "
        f"the journal grew by {result['journal_grew_bytes'] / 1e6:.1f} MB"
    )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
