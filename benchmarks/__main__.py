"""``python -m benchmarks``: run the reservation benchmarks and write the report.

Without ``--redis-url`` / ``--database-url`` it starts a throw-away Redis and a
durable PostgreSQL (fsync and synchronous commit on) with the test harness in a
temporary folder, and stops them at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import logging
import os
import platform
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import report as reporting
from benchmarks.redis_benchmark import run_redis_benchmark
from benchmarks.runner import Runner, opened
from benchmarks.scenarios import SCENARIOS
from benchmarks.systems import SYSTEMS, Urls, describe

ROOT = Path(__file__).resolve().parent.parent
NOTES = Path(__file__).with_name("docs_notes.md")


@dataclass
class Config:
    """What to run; the defaults are the full benchmark."""

    scenarios: Sequence[str] = tuple(SCENARIOS)
    systems: Sequence[str] = tuple(SYSTEMS)
    concurrency: Sequence[int] = (1, 16, 64, 256)
    duration: float = 2.0
    warmup: float = 0.5
    workers: int = 2
    loop: str = "uvloop"
    ceiling: bool = True
    smoke: bool = False
    sellout_scale: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)


def smoke_config(**changes: Any) -> Config:
    """Small enough for CI: correctness only (no oversell, conservation), no timing."""
    base = Config(
        concurrency=(16,), duration=0.2, warmup=0.05, workers=0, loop="asyncio",
        ceiling=False, smoke=True, sellout_scale=0.25,
    )  # fmt: skip
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def _progress(total: int) -> Any:
    try:
        from tqdm import tqdm  # noqa: PLC0415
    except ImportError:  # pragma: no cover - the bench extra has it

        class _Quiet:
            def update(self, n: int = 1) -> None: ...
            def set_postfix_str(self, s: str) -> None: ...
            def write(self, s: str) -> None:
                print(s, file=sys.stderr)

            def close(self) -> None: ...

        return _Quiet()
    return tqdm(total=total, unit="cell", dynamic_ncols=True, disable=None)


async def run_benchmarks(config: Config, urls: Urls) -> dict[str, Any]:
    """Run every cell of `config` against the servers at `urls`; return the report."""
    runner = Runner(
        urls, workers=config.workers, warmup=config.warmup, duration=config.duration,
        loop=config.loop, sellout_scale=config.sellout_scale,
    )  # fmt: skip
    started = dt.datetime.now(dt.UTC)
    records: list[dict[str, Any]] = []
    ceiling: dict[str, Any] = {"available": False, "reason": "not run"}
    cells = len(config.scenarios) * len(config.systems) * len(config.concurrency)
    bar = _progress(cells + (1 if config.ceiling else 0))
    try:
        await runner.warm_up_workers()
        if config.ceiling:
            bar.set_postfix_str("redis-benchmark EVALSHA -c 64")
            ceiling = await run_redis_benchmark(urls.redis)
            bar.update()
        for scenario_name in config.scenarios:
            scenario = SCENARIOS[scenario_name]
            for system_name in config.systems:
                admin = SYSTEMS[system_name](urls, scenario, 1)
                async with opened(admin):
                    for c in config.concurrency:
                        label = f"{scenario_name} {system_name} c={c}"

                        def phase(p: str, label: str = label) -> None:
                            bar.set_postfix_str(f"{label} {p}")

                        cell = await runner.cell(admin, scenario, c, on_phase=phase)
                        records.append(cell.record())
                        bar.update()
                        if cell.oversold or not cell.conserved or cell.errors:
                            bar.write(
                                f"{label}: oversold {cell.oversold}, conserved {cell.conserved}, "
                                f"errors {cell.errors} {cell.timed['error_samples']}"
                                f"{cell.sellout['error_samples']}"
                            )
    finally:
        bar.close()
        runner.close()
    report: dict[str, Any] = {
        "meta": {
            "started": started.isoformat(timespec="seconds"),
            "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}",
            "duration": config.duration,
            "warmup": config.warmup,
            "workers": config.workers or "in-process",
            "loop": config.loop,
            "smoke": config.smoke,
            "postgres_durable": config.extra.get("postgres_durable", "given URL"),
            "concurrency": list(config.concurrency),
        },
        "scenarios": {name: SCENARIOS[name].description for name in config.scenarios},
        "systems": [describe(name) for name in config.systems],
        "redis_benchmark": ceiling,
        "records": records,
    }
    report["ratios"] = reporting.ratios(records, ceiling)
    report["batching_cost"] = reporting.batching_cost(records)
    return report


@contextlib.contextmanager
def servers(args: argparse.Namespace) -> Iterator[tuple[Urls, bool | str]]:
    """The URLs given, or a Redis and a durable PostgreSQL started for the run."""
    if args.redis_url and args.database_url:
        yield Urls(args.redis_url, args.database_url), "given URL"
        return
    from commercekit.testing.servers import PostgresServer, RedisServer  # noqa: PLC0415

    with (
        tempfile.TemporaryDirectory(prefix="commercekit-bench-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        redis_url = args.redis_url or stack.enter_context(RedisServer(Path(tmp) / "redis")).url
        if args.database_url:
            database_url, durable = args.database_url, "given URL"
        else:
            pg = stack.enter_context(PostgresServer(Path(tmp) / "postgres", durable=True))
            database_url, durable = pg.url, True
        yield Urls(redis_url, database_url), durable


def _csv(kind: type, choices: Sequence[Any] | None = None) -> Any:
    def parse(text: str) -> list[Any]:
        values = [kind(v) for v in text.split(",") if v]
        bad = [v for v in values if choices is not None and v not in choices]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(map(str, choices or []))}")
        return values

    return parse


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, run, write the report."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="a tiny correctness-only run (CI)")
    parser.add_argument("--redis-url", help="use this Redis (its database is flushed!)")
    parser.add_argument("--database-url", help="use this PostgreSQL (libpq URL)")
    parser.add_argument("--duration", type=float, help="measured seconds per cell")
    parser.add_argument("--warmup", type=float, help="unmeasured seconds before each cell")
    parser.add_argument("--concurrency", type=_csv(int), help="e.g. 1,16,64,256")
    parser.add_argument("--scenarios", type=_csv(str, list(SCENARIOS)), help=", ".join(SCENARIOS))
    parser.add_argument("--systems", type=_csv(str, list(SYSTEMS)), help=", ".join(SYSTEMS))
    parser.add_argument("--workers", type=int, help="client processes (0: in this process)")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], help="the clients' event loop")
    parser.add_argument("--no-redis-benchmark", action="store_true", help="skip the ceiling")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument(
        "--name",
        default=None,
        help="file name (default: latest, or smoke); latest also rewrites docs/benchmarks.md",
    )
    parser.add_argument(
        "--docs", type=Path, default=ROOT / "docs" / "benchmarks", help="copy the PNGs here"
    )
    args = parser.parse_args(argv)

    config = smoke_config() if args.smoke else Config()
    for option in ("duration", "warmup", "concurrency", "scenarios", "systems", "workers", "loop"):
        value = getattr(args, option)
        if value is not None:
            setattr(config, option, value)
    if args.no_redis_benchmark:
        config.ceiling = False
    if config.loop == "uvloop":
        try:
            import uvloop  # noqa: F401, PLC0415
        except ImportError:
            config.loop = "asyncio"
    name = args.name or ("smoke" if config.smoke else "latest")
    # Each benchmark cell restores Redis from the ledger on purpose: not worth a warning.
    logging.getLogger("commercekit.reservations.durable").setLevel(logging.ERROR)

    with servers(args) as (urls, durable):
        config.extra["postgres_durable"] = durable
        report = asyncio.run(run_benchmarks(config, urls))
    written = reporting.write(report, args.out, name, None if config.smoke else args.docs)
    if name == "latest" and args.docs is not None:
        page = args.docs.parent / "benchmarks.md"
        reporting.write_docs(report, page, NOTES.read_text())
        written.append(page)
    print(reporting.markdown(report))
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    bad = [
        r for r in report["records"]
        if r["system"].startswith("commercekit") and (r["oversold"] or not r["conserved"])
    ]  # fmt: skip
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
