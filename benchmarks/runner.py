"""The closed-loop load generator: N logical clients, each reserving as soon as its last call ends.

A cell (scenario x system x concurrency) runs two phases on freshly prepared data:

1. **timed**: every SKU has far more stock than the run can take; the clients reserve
   for `warmup` + `duration` seconds and the latencies of the calls that start inside
   the `duration` window are kept. Reservations per second count granted holds.
2. **sell-out**: every SKU gets a little stock (`Scenario.sellout_stock`) and the clients
   make `Scenario.sellout_attempts` attempts between them, so the stock runs out while
   they contend for it: this is where a read-then-write system oversells.

After each phase the data is audited at a quiescent point (no oversell, conservation).
The clients of a cell run in `workers` processes (0: in this process and event loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from benchmarks.scenarios import SCENARIOS, Scenario
from benchmarks.systems import SYSTEMS, Audit, System, Urls

BIG_STOCK = 1_000_000_000


@dataclass(frozen=True)
class Job:
    """What one worker does: run `clients` clients of `system` for one phase."""

    system: str
    scenario: str
    urls: Urls
    clients: int
    seed: int
    phase: str  # "timed" | "sellout"
    start_at: float = 0.0  # wall clock (time.time) when the warm-up starts
    warmup: float = 0.0
    duration: float = 0.0
    attempts: int = 0
    deadline: float = 0.0  # seconds the sell-out may take at most


@dataclass
class Outcome:
    """What the clients of one or more workers saw."""

    ok: int = 0
    rejected: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    granted: Counter[int] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    window: float = 0.0

    def merge(self, other: Outcome) -> None:
        """Add another worker's outcome."""
        self.ok += other.ok
        self.rejected += other.rejected
        self.errors += other.errors
        self.latencies_ms += other.latencies_ms
        self.granted.update(other.granted)
        self.error_samples += other.error_samples[: 3 - len(self.error_samples)]
        self.window = max(self.window, other.window)


async def _timed(system: System, scenario: Scenario, job: Job) -> Outcome:
    out = Outcome(window=job.duration)
    offset = time.perf_counter() - time.time()
    await asyncio.sleep(max(0.0, job.start_at - time.time()))
    begin = job.start_at + offset + job.warmup
    end = begin + job.duration

    async def client(rng: random.Random) -> None:
        clock, reserve, pick = time.perf_counter, system.reserve, scenario.pick
        latencies, granted = out.latencies_ms, out.granted
        while (t0 := clock()) < end:
            lines = pick(rng)
            try:
                ok = await reserve(lines)
            except Exception as exc:
                out.errors += 1
                if len(out.error_samples) < 3:
                    out.error_samples.append(repr(exc))
                continue
            t1 = clock()
            if ok:
                for i, q in lines:
                    granted[i] += q
            if t0 >= begin and t1 <= end:
                latencies.append((t1 - t0) * 1000.0)
                if ok:
                    out.ok += 1
                else:
                    out.rejected += 1

    await asyncio.gather(*(client(random.Random(job.seed * 1000 + c)) for c in range(job.clients)))
    return out


async def _sellout(system: System, scenario: Scenario, job: Job) -> Outcome:
    out = Outcome()
    left = job.attempts
    stop = time.perf_counter() + job.deadline

    async def client(rng: random.Random) -> None:
        nonlocal left
        while left > 0 and time.perf_counter() < stop:
            left -= 1
            lines = scenario.pick(rng)
            try:
                ok = await system.reserve(lines)
            except Exception as exc:
                out.errors += 1
                if len(out.error_samples) < 3:
                    out.error_samples.append(repr(exc))
                continue
            if ok:
                out.ok += 1
                for i, q in lines:
                    out.granted[i] += q
            else:
                out.rejected += 1

    await asyncio.gather(*(client(random.Random(job.seed * 7919 + c)) for c in range(job.clients)))
    return out


async def run_job(job: Job) -> Outcome:
    """Run one worker's share of a phase in the current event loop."""
    scenario = SCENARIOS[job.scenario]
    system = SYSTEMS[job.system](job.urls, scenario, job.clients)
    await system.open()
    try:
        if job.phase == "timed":
            return await _timed(system, scenario, job)
        return await _sellout(system, scenario, job)
    finally:
        await system.close()


def run_job_in_process(job: Job, loop: str) -> Outcome:
    """Entry point of a worker process."""
    if loop == "uvloop":
        import uvloop  # noqa: PLC0415 - optional

        uvloop.install()
    return asyncio.run(run_job(job))


@dataclass
class CellResult:
    """The measurements of one scenario x system x concurrency."""

    scenario: str
    system: str
    concurrency: int
    workers: int
    ops_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int
    oversold: int
    conserved: bool
    timed: dict[str, Any]
    sellout: dict[str, Any]

    def record(self) -> dict[str, Any]:
        """The JSON record."""
        return dict(self.__dict__)


def percentile(sorted_values: list[float], p: float) -> float:
    """The `p`-th percentile (nearest rank) of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


class Runner:
    """Runs cells; owns the worker processes (if any)."""

    def __init__(
        self,
        urls: Urls,
        *,
        workers: int,
        warmup: float,
        duration: float,
        loop: str = "uvloop",
        sellout_scale: float = 1.0,
    ) -> None:
        self.urls = urls
        self.sellout_scale = sellout_scale
        self.workers = workers
        self.warmup = warmup
        self.duration = duration
        self.loop = loop
        self._pool: ProcessPoolExecutor | None = None
        if workers > 0:
            import multiprocessing  # noqa: PLC0415

            self._pool = ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn")
            )

    def close(self) -> None:
        """Stop the worker processes."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    async def warm_up_workers(self) -> None:
        """Start the worker processes and import the benchmark there (not timed)."""
        if self._pool is None:
            return
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(self._pool, _imported) for _ in range(self.workers))
        )

    async def _phase(self, jobs: list[Job]) -> Outcome:
        total = Outcome()
        if self._pool is None:
            for outcome in await asyncio.gather(*(run_job(job) for job in jobs)):
                total.merge(outcome)
            return total
        loop = asyncio.get_running_loop()
        futures = [loop.run_in_executor(self._pool, run_job_in_process, j, self.loop) for j in jobs]
        for outcome in await asyncio.gather(*futures):
            total.merge(outcome)
        return total

    def _split(self, concurrency: int) -> list[int]:
        parts = max(1, min(self.workers, concurrency))
        return [concurrency // parts + (1 if i < concurrency % parts else 0) for i in range(parts)]

    async def cell(
        self,
        admin: System,
        scenario: Scenario,
        concurrency: int,
        on_phase: Callable[[str], None] = lambda _: None,
    ) -> CellResult:
        """Measure one cell: prepare, timed phase, audit, sell-out phase, audit."""
        name = type(admin).name
        shares = self._split(concurrency)
        await admin.prepare(BIG_STOCK)
        on_phase("timed")
        start_at = time.time() + (1.0 if self._pool is not None else 0.05)
        timed = await self._phase(
            [
                Job(name, scenario.name, self.urls, n, seed, "timed", start_at=start_at,
                    warmup=self.warmup, duration=self.duration)
                for seed, n in enumerate(shares)
            ]
        )  # fmt: skip
        timed_audit = await admin.audit(BIG_STOCK, timed.granted)

        on_phase("sell-out")
        await admin.prepare(scenario.sellout_stock)
        attempts = _spread(max(1, int(scenario.sellout_attempts * self.sellout_scale)), shares)
        sell = await self._phase(
            [
                Job(name, scenario.name, self.urls, n, 100 + seed, "sellout",
                    attempts=a, deadline=max(5.0, 2 * self.duration))
                for seed, (n, a) in enumerate(zip(shares, attempts, strict=True))
            ]
        )  # fmt: skip
        sell_audit = await admin.audit(scenario.sellout_stock, sell.granted)

        latencies = sorted(timed.latencies_ms)
        return CellResult(
            scenario=scenario.name,
            system=name,
            concurrency=concurrency,
            workers=len(shares) if self._pool is not None else 0,
            ops_per_s=timed.ok / timed.window if timed.window else 0.0,
            p50_ms=percentile(latencies, 50),
            p95_ms=percentile(latencies, 95),
            p99_ms=percentile(latencies, 99),
            errors=timed.errors + sell.errors,
            oversold=timed_audit.oversold + sell_audit.oversold,
            conserved=timed_audit.conserved and sell_audit.conserved,
            timed=_phase_record(timed, timed_audit),
            sellout=_phase_record(sell, sell_audit)
            | {
                "stock_per_sku": scenario.sellout_stock,
                "units_granted": sum(sell.granted.values()),
                "units_in_stock": scenario.sellout_stock * scenario.skus,
            },
        )


def _spread(total: int, shares: list[int]) -> list[int]:
    clients = sum(shares)
    return [total * n // clients for n in shares]


def _phase_record(outcome: Outcome, audit: Audit) -> dict[str, Any]:
    return {
        "granted": outcome.ok,
        "rejected": outcome.rejected,
        "errors": outcome.errors,
        "error_samples": outcome.error_samples,
        "oversold": audit.oversold,
        "conserved": audit.conserved,
        "problems": audit.problems,
    }


def _imported() -> None:
    import benchmarks.systems  # noqa: F401, PLC0415


@contextlib.asynccontextmanager
async def opened(system: System) -> Any:
    """Open `system`, close it afterwards."""
    await system.open()
    try:
        yield system
    finally:
        await system.close()
