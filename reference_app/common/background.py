"""Background loops of a service: run a job every few seconds until the service stops.

A failing round is logged and the loop goes on: a dependency that is down
must not kill the process, only delay the job.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress

from prometheus_client import CollectorRegistry, Gauge

from commercekit.events import EventBus

__all__ = ["MAX_START_JITTER", "consumer_lag", "every", "track_consumer_lag"]

log = logging.getLogger("reference_app.background")

LAG_INTERVAL = 5.0
"""Seconds between two readings of a consumer group's lag."""

MAX_START_JITTER = 5.0
"""The longest a loop waits before its first round (a tenth of its interval at most)."""


async def _loop(name: str, interval: float, job: Callable[[], Awaitable[object]]) -> None:
    # Replicas started together should not run their rounds in lockstep; an
    # hourly job still runs its first round soon after the start, not at any
    # moment of its first six minutes.
    jitter = min(interval * 0.1, MAX_START_JITTER)
    await asyncio.sleep(random.uniform(0, jitter))  # noqa: S311 (jitter, not crypto)
    while True:
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning(
                "background job %s failed; next round in %.1f s", name, interval, exc_info=True
            )
        await asyncio.sleep(interval)


@asynccontextmanager
async def every(
    interval: float, job: Callable[[], Awaitable[object]], *, name: str
) -> AsyncIterator[asyncio.Task[None]]:
    """Run `job` now and then every `interval` seconds, until the block ends."""
    task = asyncio.create_task(_loop(name, interval, job), name=name)
    try:
        yield task
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def consumer_lag(bus: EventBus, group: str) -> int:
    """This process's share of `group`'s lag, from buses that can tell (0 otherwise)."""
    lag = getattr(bus, "lag", None)
    if lag is None:
        return 0
    value = lag(group)
    if inspect.isawaitable(value):
        value = await value
    return int(value)


@asynccontextmanager
async def track_consumer_lag(
    registry: CollectorRegistry, bus: EventBus, group: str, *, service: str
) -> AsyncIterator[None]:
    """Keep a ``refapp_<service>_consumer_lag`` gauge of `group` up to date."""
    gauge = Gauge(
        f"refapp_{service}_consumer_lag",
        f"Events of consumer group {group!r} this process has not fetched yet.",
        registry=registry,
    )

    async def read() -> None:
        gauge.set(await consumer_lag(bus, group))

    async with every(LAG_INTERVAL, read, name=f"{service}-consumer-lag"):
        yield
