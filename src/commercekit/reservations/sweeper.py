"""`ExpirySweeper`: expires holds past their deadline and reports each expiry."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

from commercekit.errors import BackendUnavailable, ConfigurationError
from commercekit.reservations.models import Reservation
from commercekit.reservations.store import ReservationStore

__all__ = ["ExpiryCallback", "ExpirySweeper", "report_expiry"]

logger = logging.getLogger("commercekit.reservations.sweeper")

ExpiryCallback = Callable[[Reservation], Awaitable[None] | None]
"""Called once for each reservation a sweep expired (sync or async)."""


async def report_expiry(callback: ExpiryCallback | None, reservation: Reservation) -> None:
    """Call an expiry callback (sync or async); log what it raises, the expiry stands."""
    if callback is None:
        return
    try:
        result = callback(reservation)
        if inspect.isawaitable(result):
            await result
    except Exception:
        logger.exception("on_expired failed for reservation %s", reservation.id)


class ExpirySweeper:
    """A background task that expires due holds and returns their stock.

    Safe to run on every replica at once: each hold is expired by exactly one
    sweeper (the store's `expire_due` is atomic), so each expiry is reported
    exactly once, by the sweeper that made it.

    ```python
    async with ExpirySweeper(store, interval=10, on_expired=publish):
        ...  # serve requests
    ```

    Args:
        store: the reservation store to sweep.
        interval: seconds between sweeps.
        batch_size: holds expired per store call; a sweep repeats calls
            until a batch comes back short, so a backlog drains in one sweep.
        jitter: each wait is `interval` times a random factor in
            ``[1 - jitter, 1 + jitter]``, so replicas do not sweep in lockstep.
        on_expired: called for each expired reservation. An exception in it
            is logged; the expiry itself stands.
    """

    def __init__(
        self,
        store: ReservationStore,
        *,
        interval: float = 10.0,
        batch_size: int = 100,
        jitter: float = 0.1,
        on_expired: ExpiryCallback | None = None,
    ) -> None:
        if interval <= 0:
            raise ConfigurationError(f"interval must be positive, got {interval}")
        if batch_size < 1:
            raise ConfigurationError(f"batch_size must be at least 1, got {batch_size}")
        if not 0 <= jitter < 1:
            raise ConfigurationError(f"jitter must be in [0, 1), got {jitter}")
        self.store = store
        self.interval = interval
        self.batch_size = batch_size
        self.jitter = jitter
        self.on_expired = on_expired
        self.expired_total = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    @property
    def running(self) -> bool:
        """Whether the background task is running."""
        return self._task is not None and not self._task.done()

    async def sweep_once(self) -> list[Reservation]:
        """Expire every hold that is due now; return those this sweeper expired."""
        expired: list[Reservation] = []
        while True:
            batch = await self.store.expire_due(self.batch_size)
            for reservation in batch:
                await self._report(reservation)
            expired += batch
            if len(batch) < self.batch_size or self._stopping.is_set():
                break
        self.expired_total += len(expired)
        return expired

    async def _report(self, reservation: Reservation) -> None:
        await report_expiry(self.on_expired, reservation)

    def _next_wait(self) -> float:
        spread = random.uniform(-self.jitter, self.jitter)  # noqa: S311 - not cryptographic
        return self.interval * (1 + spread)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.sweep_once()
            except BackendUnavailable as exc:
                logger.warning("sweep skipped, backend unavailable: %s", exc)
            except Exception:
                logger.exception("sweep failed; retrying after the interval")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._next_wait())

    def start(self) -> None:
        """Start sweeping in the background (every `interval` seconds)."""
        if self.running:
            return
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="commercekit-expiry-sweeper")

    async def stop(self) -> None:
        """Stop after the current batch; a batch is never cut in half."""
        if self._task is None:
            return
        self._stopping.set()
        await self._task
        self._task = None

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
