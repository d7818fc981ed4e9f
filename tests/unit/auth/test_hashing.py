"""`PasswordHashingPool`: bounded password checks on threads of their own, refusing at once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from commercekit.auth import HashingBusy, PasswordHashingPool, default_concurrency
from commercekit.errors import AuthError, ConfigurationError


class GatedHasher:
    """A hasher whose calls block until the test opens the gate; it records their threads."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.threads: set[str] = set()
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0

    def _work(self, result: object) -> object:
        with self.lock:
            self.threads.add(threading.current_thread().name)
            self.running += 1
            self.most = max(self.most, self.running)
        self.gate.wait(10)
        with self.lock:
            self.running -= 1
        return result

    def hash(self, password: str) -> str:
        return str(self._work("hash:" + password))

    def verify(self, password_hash: str | None, password: str) -> bool:
        return bool(self._work(password_hash == "hash:" + password))

    def verify_and_update(
        self, password_hash: str | None, password: str
    ) -> tuple[bool, str | None]:
        return bool(self._work(password_hash == "hash:" + password)), None


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110 - the condition is another thread's state
            await asyncio.sleep(0.005)


async def test_calls_run_on_the_pools_own_threads_at_most_concurrency_at_once() -> None:
    hasher = GatedHasher()
    async with PasswordHashingPool(hasher, concurrency=2, queue=10) as pool:
        calls = [asyncio.create_task(pool.hash(f"p{n}")) for n in range(6)]
        await _until(lambda: hasher.running == 2)
        await asyncio.sleep(0.05)
        assert (pool.running, pool.waiting) == (2, 4)
        hasher.gate.set()
        assert await asyncio.gather(*calls) == [f"hash:p{n}" for n in range(6)]
        assert await pool.verify("hash:x", "x") is True
        assert await pool.verify_and_update("hash:x", "y") == (False, None)
    assert hasher.most == 2
    assert hasher.threads
    assert all(t.startswith("commercekit-password") for t in hasher.threads)
    assert (pool.running, pool.waiting) == (0, 0)


async def test_a_full_queue_is_refused_at_once_and_the_admitted_calls_finish() -> None:
    hasher = GatedHasher()
    async with PasswordHashingPool(hasher, concurrency=1, queue=2, retry_after=3) as pool:
        admitted = [asyncio.create_task(pool.hash(f"p{n}")) for n in range(3)]
        await _until(lambda: hasher.running == 1)
        assert pool.full
        with pytest.raises(HashingBusy) as busy:
            await pool.hash("one too many")
        assert busy.value.retry_after == 3
        with pytest.raises(HashingBusy):
            pool.ensure_room()
        assert pool.refused == 2
        assert isinstance(busy.value, AuthError)
        hasher.gate.set()
        assert len(await asyncio.gather(*admitted)) == 3
        assert not pool.full
        pool.ensure_room()
        assert pool.refused == 2
        assert await pool.hash("room again") == "hash:room again"


async def test_the_event_loop_answers_while_every_slot_hashes() -> None:
    hasher = GatedHasher()
    async with PasswordHashingPool(hasher, concurrency=1, queue=50) as pool:
        calls = [asyncio.create_task(pool.hash("p")) for _ in range(20)]
        await _until(lambda: hasher.running == 1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.sleep(0)
        assert loop.time() - started < 0.5  # nothing on the loop waits for the hashing
        hasher.gate.set()
        await asyncio.gather(*calls)


async def test_a_caller_that_gives_up_frees_its_slot_only_when_its_thread_is_done() -> None:
    hasher = GatedHasher()
    async with PasswordHashingPool(hasher, concurrency=1, queue=1) as pool:
        running = asyncio.create_task(pool.hash("first"))
        await _until(lambda: hasher.running == 1)
        waiting = asyncio.create_task(pool.hash("second"))
        await _until(lambda: pool.waiting == 1)
        running.cancel()
        waiting.cancel()
        await asyncio.gather(running, waiting, return_exceptions=True)
        # The first check still runs on its thread: its slot is still taken.
        assert pool.running == 1
        assert pool.waiting == 0
        hasher.gate.set()
        await _until(lambda: pool.running == 0)
        assert await pool.hash("third") == "hash:third"
    assert hasher.most == 1


def test_the_bounds_are_checked() -> None:
    with pytest.raises(ConfigurationError):
        PasswordHashingPool(GatedHasher(), concurrency=0)
    with pytest.raises(ConfigurationError):
        PasswordHashingPool(GatedHasher(), queue=-1)
    pool = PasswordHashingPool(GatedHasher())
    assert pool.concurrency == default_concurrency() >= 1
    pool.close()
