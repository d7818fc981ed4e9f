"""``commercekit sweep``: run an expiry sweeper on its own."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from typing import Any

from commercekit.reservations.models import Reservation
from commercekit.reservations.sweeper import ExpirySweeper


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``sweep`` on the ``commercekit`` command line."""
    sweep = commands.add_parser(
        "sweep",
        help="expire due reservation holds (safe to run several at once)",
        description="Expire holds past their deadline and return their stock; "
        "print one JSON line per expiry.",
    )
    sweep.add_argument("--redis-url", required=True, help="e.g. redis://localhost:6379/0")
    sweep.add_argument(
        "--database-url",
        help="SQLAlchemy async URL of the ledger; record each expiry there too",
    )
    sweep.add_argument("--prefix", default="commercekit", help="key namespace (%(default)s)")
    sweep.add_argument("--interval", type=float, default=10.0, help="seconds (%(default)s)")
    sweep.add_argument("--batch-size", type=int, default=100, help="holds per call (%(default)s)")
    sweep.add_argument("--once", action="store_true", help="sweep once and exit")
    sweep.set_defaults(handler=lambda args: asyncio.run(_sweep(args)))


def _print_expiry(reservation: Reservation) -> None:
    line = {"event": "reservation.expired", "id": reservation.id, "owner": reservation.owner}
    print(json.dumps(line), flush=True)


async def _sweep(args: argparse.Namespace) -> int:
    import redis.asyncio as aioredis  # noqa: PLC0415 - needs the redis extra

    from commercekit.reservations.redis import RedisReservationStore  # noqa: PLC0415

    client = aioredis.from_url(args.redis_url)
    engine: Any = None
    store: Any = RedisReservationStore(
        client, prefix=args.prefix, guarded=args.database_url is not None
    )
    try:
        if args.database_url:
            from sqlalchemy.ext.asyncio import create_async_engine  # noqa: PLC0415

            from commercekit.reservations.durable import DurableReservations  # noqa: PLC0415
            from commercekit.reservations.ledger import ReservationLedger  # noqa: PLC0415

            engine = create_async_engine(args.database_url)
            store = DurableReservations(store, ReservationLedger(engine))
            await store.start()
        sweeper = ExpirySweeper(
            store, interval=args.interval, batch_size=args.batch_size, on_expired=_print_expiry
        )
        if args.once:
            await sweeper.sweep_once()
            return 0
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with sweeper:
            print(f"sweeping every {args.interval}s; Ctrl-C to stop", file=sys.stderr, flush=True)
            await stop.wait()
        return 0
    finally:
        await client.aclose()
        if engine is not None:
            with contextlib.suppress(Exception):
                await engine.dispose()
