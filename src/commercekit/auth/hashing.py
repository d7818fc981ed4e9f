"""Password checks off the event loop, bounded, on threads of their own.

```python
pool = PasswordHashingPool(PasswordHasher(), concurrency=1, queue=16)
try:
    ok, new_hash = await pool.verify_and_update(user.password_hash, attempt)
except HashingBusy as busy:
    ...  # answer 503 with Retry-After: busy.retry_after, at once
```

A password check costs tens of milliseconds of CPU and 64 MiB by design. In
a service that also answers cheap requests (the gateway's token check), an
unbounded number of them run side by side, take every core, and make the
cheap requests wait behind them: a login flood becomes an outage of
everything else. `PasswordHashingPool` runs at most `concurrency` checks at
once, on a thread pool of its own (not the default executor, which other
work of the process shares), lets at most `queue` more wait, and refuses the
rest at once with `HashingBusy`, so the service sheds logins before it sheds
anything else. Leave a core to the event loop: the default is one thread
fewer than the CPUs the process may use, and at least one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol, TypeVar

from commercekit.errors import AuthError, ConfigurationError

__all__ = ["HashingBusy", "PasswordHashing", "PasswordHashingPool", "default_concurrency"]

T = TypeVar("T")


class HashingBusy(AuthError):
    """Every password-check slot is taken and the queue is full: retry after `retry_after` s.

    Nothing was checked or changed; answer 503 (or 429) with ``Retry-After``.
    """

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(f"too many password checks at once: retry in {retry_after:g} s")


class PasswordHashing(Protocol):
    """What `PasswordHashingPool` runs: `commercekit.auth.PasswordHasher`'s methods."""

    def hash(self, password: str) -> str:
        """A new hash of `password`."""
        ...

    def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether `password` matches `password_hash` (None: no such user, still slow)."""
        ...

    def verify_and_update(
        self, password_hash: str | None, password: str
    ) -> tuple[bool, str | None]:
        """Verify, and on a match a new hash when the stored one is outdated."""
        ...


def default_concurrency() -> int:
    """One thread fewer than the CPUs this process may run on, and at least one."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus - 1)


class PasswordHashingPool:
    """Runs a hasher's calls on `concurrency` threads of its own; `queue` more may wait.

    Args:
        hasher: the `PasswordHasher` (or anything with its three methods).
        concurrency: checks running at once (`default_concurrency()` when None).
        queue: calls that may wait for a thread; one more is `HashingBusy` at once.
        retry_after: the seconds `HashingBusy` tells callers to wait.

    The counts are per event loop's process: each replica bounds its own.
    Call `close()` (or use ``async with``) when the service stops.
    """

    def __init__(
        self,
        hasher: PasswordHashing,
        *,
        concurrency: int | None = None,
        queue: int = 16,
        retry_after: float = 1.0,
    ) -> None:
        concurrency = default_concurrency() if concurrency is None else concurrency
        if concurrency < 1:
            raise ConfigurationError(f"concurrency must be at least 1, not {concurrency}")
        if queue < 0:
            raise ConfigurationError(f"queue must not be negative, not {queue}")
        self.hasher = hasher
        self.concurrency = concurrency
        self.queue = queue
        self.retry_after = retry_after
        self._executor = ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix="commercekit-password"
        )
        self._slots: asyncio.Semaphore | None = None
        self._admitted = 0
        self._running = 0
        self._refused = 0

    @property
    def running(self) -> int:
        """Checks running on the pool's threads now."""
        return self._running

    @property
    def waiting(self) -> int:
        """Calls admitted and waiting for a thread."""
        return self._admitted - self._running

    @property
    def refused(self) -> int:
        """Calls refused with `HashingBusy` so far (a counter, for metrics)."""
        return self._refused

    @property
    def full(self) -> bool:
        """Whether a call now would be `HashingBusy`."""
        return self._admitted >= self.concurrency + self.queue

    def ensure_room(self) -> None:
        """Raise `HashingBusy` now if a call would be refused: refuse before other work.

        A login can call it before it looks the user up, so a flood it sheds
        costs no database query. There is room for nobody in particular: the
        call that follows may still be refused.
        """
        if self.full:
            self._refused += 1
            raise HashingBusy(self.retry_after)

    async def hash(self, password: str) -> str:
        """`PasswordHasher.hash` on the pool; `HashingBusy` when it is full."""
        return await self._run(self.hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """`PasswordHasher.verify` on the pool; `HashingBusy` when it is full."""
        return await self._run(self.hasher.verify, password_hash, password)

    async def verify_and_update(
        self, password_hash: str | None, password: str
    ) -> tuple[bool, str | None]:
        """`PasswordHasher.verify_and_update` on the pool; `HashingBusy` when it is full."""
        return await self._run(self.hasher.verify_and_update, password_hash, password)

    def close(self) -> None:
        """Stop the threads; calls still waiting for one are cancelled."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def __aenter__(self) -> PasswordHashingPool:
        return self

    async def __aexit__(self, *_: object) -> None:
        self.close()

    async def _run(self, call: Callable[..., T], *args: object) -> T:
        self.ensure_room()
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        slots = self._slots
        self._admitted += 1
        try:
            await slots.acquire()
        except BaseException:
            self._admitted -= 1
            raise
        loop = asyncio.get_running_loop()
        self._running += 1

        def finished(_: Future[T]) -> None:
            # The slot is free when the thread is, even if the caller gave up waiting.
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(self._release, slots)

        try:
            future = self._executor.submit(call, *args)
        except BaseException:
            self._release(slots)
            raise
        future.add_done_callback(finished)
        return await asyncio.wrap_future(future)

    def _release(self, slots: asyncio.Semaphore) -> None:
        self._running -= 1
        self._admitted -= 1
        slots.release()
