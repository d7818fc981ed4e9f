"""``python -m benchmarks.http``: the shop through the gateway, as its users load it.

Starts the reference app's local stack (every service behind nginx, on a
PostgreSQL, Redis and Kafka of the test harness), creates `--accounts`
shoppers (1,000 by default: rows in the users table and a signed access
token each, used round-robin so the gateway sees as many tokens as a real
shop does), then runs `wrk` (a C load generator, ``apt-get install wrk``)
at each number of connections against:

- ``reserve``: ``POST /api/v1/inventory/reserve``, one unit of a hot SKU;
- ``reserve+key``: the same with a fresh ``Idempotency-Key`` per request;
- ``cart3``: a cart of three lines (three SKUs);
- ``products``: ``GET /api/v1/products`` (public, no token);
- ``health``: nginx's own ``/health``, the ceiling of the setup.

Then the payment path: shoppers at a steady rate reserve, pay
(``POST /api/v1/payment``) and poll their reservation every 100 ms, as a
checkout page does; the time from the 202 to the reservation's
confirmation (through Kafka, the inventory service's settlement and the
ledger) is what is measured: its ``updatedAt`` once it reads CONFIRMED, on
the same clock, so the polls neither round it up nor, by their number,
load the service they measure. Beside it, how long the worker's stock
watch takes to announce the journal rows the load wrote.

In the same run, on the same servers (a database and a Redis database of
its own), the library's durable reserve path (``commercekit-durable``, hot
SKU, the benchmark of ``python -m benchmarks``) gives the ratio the front
door is judged by: it is measured before the first number of connections
and after each, and each wrk run is judged against the mean of the two
measurements around it (the machine's speed drifts over minutes). For every
wrk run the CPU seconds per request of each
process group (gateway, each service, Redis, PostgreSQL, Kafka, wrk) are
printed, so the next bottleneck is visible.

It checks the outcome: every 2xx reserve is one unit held and the stock
went down by exactly as many units (no oversell, nothing lost). Results go
to ``benchmarks/results/http.json`` and ``http.md`` (``--name`` changes
the file names); ``--plot`` draws ``docs/benchmarks/http.png`` from
``http-before.json`` and ``http.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import re
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from reference_app.launch import SERVICES, LocalStack, ServiceSpec

from benchmarks.runner import Runner, percentile
from benchmarks.scenarios import SCENARIOS
from benchmarks.systems import SYSTEMS, Urls

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PLOT = ROOT / "docs" / "benchmarks" / "http.png"
STOCK = 1_000_000  # per product (the most one may get); runs take far fewer
ADMIN_EMAIL = "bench-admin@example.com"
ADMIN_PASSWORD = "benchmark password 1"  # noqa: S105 (a throw-away user)
PRICE = "1.00"

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}

CASES = ("reserve", "reserve+key", "cart3", "products", "health")
"""What wrk loads, at each number of connections."""

RESERVING = {"reserve": 1, "reserve+key": 1, "cart3": 1}
"""The cases that take units, and how many of the hot product (or of each cart product) each."""


@dataclass
class HttpResult:
    """One wrk run."""

    target: str
    connections: int
    duration_s: float
    requests: int
    errors: int
    ops_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    cpu_ms_per_request: dict[str, float] = field(default_factory=dict)
    library_ops_per_s: float | None = None
    """The library's durable path around this run: the mean of the two measurements
    just before and just after its number of connections (see `run`)."""

    @property
    def succeeded(self) -> int:
        """Requests answered 2xx."""
        return self.requests - self.errors


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(output: str, *, target: str, connections: int, duration: float) -> HttpResult:
    """The numbers of one ``wrk --latency`` run's output.

    `errors` counts non-2xx answers and socket errors (connect, read, write,
    timeout) alike: a benchmark with errors does not count.
    """
    percentiles = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", output, re.MULTILINE))
    total = re.search(r"^\s+(\d+) requests in", output, re.MULTILINE)
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    if total is None or rate is None or not {"50", "90", "99"} <= percentiles.keys():
        raise ValueError(f"unexpected wrk output:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    errors = int(non_2xx.group(1)) if non_2xx else 0
    if socket is not None:
        errors += sum(int(n) for n in socket.groups())
    return HttpResult(
        target=target,
        connections=connections,
        duration_s=duration,
        requests=int(total.group(1)),
        errors=errors,
        ops_per_s=float(rate.group(1)),
        p50_ms=_ms(percentiles["50"]),
        p90_ms=_ms(percentiles["90"]),
        p99_ms=_ms(percentiles["99"]),
    )


def wrk_script(
    tokens_file: Path | None,
    *,
    method: str = "GET",
    path: str = "/",
    body: str | None = None,
    idempotency_keys: bool = False,
    key_prefix: str = "bench",
) -> str:
    """A wrk Lua script: `method` `path` with `body`, each request with the next token.

    Tokens come one a line from `tokens_file`, round-robin, each wrk thread
    starting elsewhere in the list. With `idempotency_keys`, every request
    carries an ``Idempotency-Key`` no other request of the run has.
    """
    lines = [
        "local tokens = {}",
        "local n = 0",
        "local seq = 0",
        "function setup(thread)",
        "  seq = seq + 1",
        '  thread:set("tid", seq)',
        "end",
        "function init(args)",
        f'  local file = "{tokens_file}"' if tokens_file else "  local file = nil",
        "  if file then for line in io.lines(file) do tokens[#tokens + 1] = line end end",
        "  n = (tid or 1) * 7919",
        "end",
        "function request()",
        "  n = n + 1",
        "  local headers = {}",
        f"  local body = {json.dumps(body) if body is not None else 'nil'}",
        '  if body then headers["Content-Type"] = "application/json" end',
        "  if #tokens > 0 then",
        '    headers["Authorization"] = "Bearer " .. tokens[(n % #tokens) + 1]',
        "  end",
    ]
    if idempotency_keys:
        lines.append(f'  headers["Idempotency-Key"] = "{key_prefix}-" .. (tid or 1) .. "-" .. n')
    lines += [
        f"  return wrk.format({json.dumps(method)}, {json.dumps(path)}, headers, body)",
        "end",
    ]
    return "\n".join(lines) + "\n"


def run_wrk(
    url: str, *, connections: int, duration: float, threads: int, script: Path | None = None
) -> str:
    """Run wrk; its standard output."""
    seconds = max(1, round(duration))  # wrk takes whole seconds
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    command += ["--timeout", "10s"]
    if script is not None:
        command += ["-s", str(script)]
    done = subprocess.run([*command, url], capture_output=True, text=True, check=True)
    return done.stdout


# ---------------------------------------------------------------- CPU accounting
def process_cpu_seconds(pids: Iterable[int]) -> float:
    """CPU seconds (user + system) of these processes and all their descendants.

    Children that ended and were waited for count through their parent's
    ``children_*`` times, live ones by their own (PostgreSQL's backends,
    nginx's workers, uvicorn's processes).
    """
    import psutil  # type: ignore[import-untyped]  # noqa: PLC0415 (the bench extra)

    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            members = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for member in members:
            try:
                times = member.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system + times.children_user + times.children_system
    return total


def _children_cpu_seconds() -> float:
    """CPU seconds of this process's waited-for children (the wrk runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    """CPU seconds per process group between two readings."""

    def __init__(self, groups: Mapping[str, Callable[[], list[int]]]) -> None:
        self.groups = dict(groups)

    def read(self) -> dict[str, float]:
        """CPU seconds so far, per group, and ``wrk`` (this process's children)."""
        seconds = {name: process_cpu_seconds(pids()) for name, pids in self.groups.items()}
        seconds["wrk"] = _children_cpu_seconds()
        return seconds

    @staticmethod
    def per_request(
        before: dict[str, float], after: dict[str, float], requests: int
    ) -> dict[str, float]:
        """Milliseconds of CPU per request of each group, and their total."""
        if requests <= 0:
            return {}
        used = {name: (after[name] - before[name]) * 1000 / requests for name in after}
        used["total"] = sum(used.values())
        return {name: round(ms, 4) for name, ms in used.items()}


def _stack_groups(stack: LocalStack) -> dict[str, Callable[[], list[int]]]:
    def pids_of(*servers: Any) -> Callable[[], list[int]]:
        return lambda: [s.pid for s in servers if s is not None and s.pid is not None]

    groups: dict[str, Callable[[], list[int]]] = {"gateway": pids_of(stack.gateway)}
    for name, processes in stack.processes.items():
        groups[name] = pids_of(*processes)
    if stack.backing is not None:
        groups["redis"] = pids_of(stack.backing.redis)
        groups["postgres"] = pids_of(stack.backing.postgres)
        groups["kafka"] = pids_of(stack.backing.kafka)
    return groups


def _py_spy(stack: LocalStack, folder: Path, case: str, seconds: float) -> list[Any]:
    """``py-spy record`` on every service process for the next `seconds` (collapsed stacks)."""
    folder.mkdir(parents=True, exist_ok=True)
    spies = []
    for name, processes in stack.processes.items():
        for index, process in enumerate(processes, start=1):
            if process.pid is None:
                continue
            out = folder / f"{case.replace('+', '-')}-{name}-{index}.txt"
            spies.append(
                subprocess.Popen(
                    ["py-spy", "record", "--pid", str(process.pid), "--duration",
                     str(max(1, round(seconds) - 1)), "--format", "raw", "--nonblocking",
                     "--gil", "--rate", "250", "--output", str(out)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip
    return spies


def _print_result(result: HttpResult) -> None:
    cpu = result.cpu_ms_per_request
    busiest = ", ".join(
        f"{name} {ms:.3f}"
        for name, ms in sorted(cpu.items(), key=lambda kv: -kv[1])
        if name != "total"
    )
    print(
        f"{result.target:12} c={result.connections:<4} {result.ops_per_s:9.0f} req/s  "
        f"p50 {result.p50_ms:6.1f} ms  p99 {result.p99_ms:7.1f} ms  "
        f"errors {result.errors}  cpu ms/req {cpu.get('total', 0):.3f} ({busiest})"
        + (
            f"  x library {result.ops_per_s / result.library_ops_per_s:.3f}"
            if result.library_ops_per_s
            else ""
        ),
        file=sys.stderr,
        flush=True,
    )


# ---------------------------------------------------------------- the shop's data
async def _create_accounts(database_url: str, count: int) -> list[str]:
    """`count` users (rows of the user service's model, with no usable password); their ids."""
    from reference_app.user.models import User  # noqa: PLC0415
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine  # noqa: PLC0415

    run = uuid.uuid4().hex[:8]
    ids = [uuid.uuid4() for _ in range(count)]
    users = [
        User(
            id=ids[i],
            username=f"bench-{run}-{i}",
            email=f"bench-{run}-{i}@example.com",
            password_hash="!benchmark-account-no-login",  # noqa: S106 (matches no password)
            role="user",
        )
        for i in range(count)
    ]
    engine = create_async_engine(database_url)
    try:
        async with async_sessionmaker(engine)() as session, session.begin():
            session.add_all(users)
    finally:
        await engine.dispose()
    return [str(i) for i in ids]


def _tokens(env: Mapping[str, str], user_ids: Sequence[str]) -> list[str]:
    """An access token for each user, signed as the user service signs them."""
    from pydantic import SecretStr  # noqa: PLC0415

    from commercekit.auth import AccessTokens, JWTSettings  # noqa: PLC0415

    settings = JWTSettings(
        environment=env["ENVIRONMENT"],
        secret=SecretStr(env["JWT_ACCESS_SECRET"]),
        access_ttl=dt.timedelta(hours=2),
    )
    tokens = AccessTokens(settings)
    return [tokens.issue(user_id, role="user") for user_id in user_ids]


def _sign_in_admin(http: httpx.Client) -> str:
    http.post(
        "/api/v1/auth/signup",
        json={"username": "benchadmin", "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
    )
    login = http.post("/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    login.raise_for_status()
    token: str = login.json()["accessToken"]
    return token


def _create_product(http: httpx.Client, admin: str, sku: str) -> str:
    created = http.post(
        "/api/v1/inventory",
        json={"sku": sku, "name": sku, "price": PRICE, "stock": STOCK},
        headers={"Authorization": f"Bearer {admin}"},
    )
    created.raise_for_status()
    product_id: str = created.json()["id"]
    return product_id


# ---------------------------------------------------------------- the payment path
@dataclass
class PaymentResult:
    """The payment path: from the 202 of ``POST /api/v1/payment`` to CONFIRMED."""

    rate_per_s: float
    duration_s: float
    payments: int
    confirmed: int
    errors: int
    p50_ms: float
    p99_ms: float
    error_samples: list[str] = field(default_factory=list)


async def _after_the_load(
    base_url: str,
    tokens: Sequence[str],
    product_id: str,
    database_url: str,
    *,
    rate: float,
    duration: float,
) -> tuple[PaymentResult | None, float | None]:
    """The payment path (none at `rate` 0) and, beside it, `_journal_announced`."""
    announced = asyncio.create_task(_journal_announced(database_url))
    payments = None
    if rate > 0:
        payments = await payment_path(base_url, tokens, product_id, rate=rate, duration=duration)
    return payments, await announced


async def _journal_announced(database_url: str, give_up_after: float = 300.0) -> float | None:
    """Seconds from now until the worker's `StockWatch` has announced the journal.

    None if it has not after `give_up_after` seconds.
    """
    from sqlalchemy.ext.asyncio import create_async_engine  # noqa: PLC0415

    from commercekit.events import Outbox  # noqa: PLC0415 (the reference app's extras)
    from commercekit.reservations import StockWatch  # noqa: PLC0415

    engine = create_async_engine(database_url)
    watch = StockWatch(engine, Outbox())  # only counts: the worker's watch announces
    started = time.monotonic()
    try:
        while await watch.pending():
            if time.monotonic() - started > give_up_after:
                return None
            await asyncio.sleep(0.25)
    finally:
        await engine.dispose()
    return round(time.monotonic() - started, 2)


async def payment_path(
    base_url: str,
    tokens: Sequence[str],
    product_id: str,
    *,
    rate: float,
    duration: float,
    poll_every: float = 0.1,
    give_up_after: float = 20.0,
) -> PaymentResult:
    """Start `rate` payments a second for `duration` seconds; time each to CONFIRMED."""
    latencies: list[float] = []
    errors: list[str] = []
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as http:

        async def one(token: str) -> None:
            auth = {"Authorization": f"Bearer {token}"}
            held = await http.post(
                "/api/v1/inventory/reserve",
                json={"productId": product_id, "quantity": 1},
                headers=auth,
            )
            if held.status_code != 201:
                errors.append(f"reserve {held.status_code}: {held.text[:120]}")
                return
            reservation = held.json()["reservationId"]
            paid = await http.post(
                "/api/v1/payment",
                json={
                    "reservationId": reservation,
                    "amount": PRICE,
                    "paymentMethod": "tok_success",
                },
                headers=auth,
            )
            if paid.status_code != 202:
                errors.append(f"payment {paid.status_code}: {paid.text[:120]}")
                return
            accepted, waiting = time.time(), time.perf_counter()
            while time.perf_counter() - waiting < give_up_after:
                await asyncio.sleep(poll_every)
                seen = await http.get(f"/api/v1/inventory/reservations/{reservation}", headers=auth)
                if seen.status_code == 200 and seen.json()["status"] == "CONFIRMED":
                    # When it was confirmed, on this machine's clock: not when a poll saw it.
                    confirmed = dt.datetime.fromisoformat(seen.json()["updatedAt"])
                    latencies.append((confirmed.timestamp() - accepted) * 1000)
                    return
            errors.append(f"reservation {reservation} not CONFIRMED after {give_up_after}s")

        tasks: list[asyncio.Task[None]] = []
        started = time.perf_counter()
        count = max(1, round(rate * duration))
        for i in range(count):
            await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(tokens[i % len(tokens)])))
        await asyncio.gather(*tasks)
    return PaymentResult(
        rate_per_s=rate,
        duration_s=duration,
        payments=count,
        confirmed=len(latencies),
        errors=len(errors),
        p50_ms=round(percentile(sorted(latencies), 50), 2),
        p99_ms=round(percentile(sorted(latencies), 99), 2),
        error_samples=errors[:3],
    )


# ---------------------------------------------------------------- the library's path
def durable_path(backing: Any, *, clients: int, duration: float) -> dict[str, Any]:
    """``commercekit-durable`` on the hot SKU, on the stack's own Redis and PostgreSQL.

    A database and a Redis database of its own: the benchmark truncates and
    flushes what it uses, never the shop's data.
    """
    database = backing.postgres.create_database(f"bench_durable_{uuid.uuid4().hex[:8]}")
    urls = Urls(backing.redis.url.rsplit("/", 1)[0] + "/9", database)

    async def measure() -> dict[str, Any]:
        runner = Runner(urls, workers=2, warmup=0.5, duration=duration)
        try:
            await runner.warm_up_workers()
            system = SYSTEMS["commercekit-durable"](urls, SCENARIOS["hot"], clients)
            await system.open()
            try:
                cell = await runner.cell(system, SCENARIOS["hot"], clients)
            finally:
                await system.close()
        finally:
            runner.close()
        return cell.record()

    return asyncio.run(measure())


def _library(backing: Any, duration: float) -> dict[str, Any]:
    print("library: commercekit-durable hot@64 on the same servers...", file=sys.stderr)
    measured = durable_path(backing, clients=64, duration=min(duration, 5.0))
    print(f"library: {measured['ops_per_s']:,.0f} reserves/s", file=sys.stderr, flush=True)
    return measured


def _load_in_blocks(
    connections: Sequence[int],
    cases: Sequence[str],
    *,
    load: Callable[..., HttpResult],
    meter: CpuMeter,
    results: list[HttpResult],
    library: Callable[[], dict[str, Any]],
) -> list[dict[str, Any]]:
    """Every case at each number of connections, with the library's path around each.

    The library's path is measured before the first number of connections
    and after each, and each run is judged against the two measurements
    around it: this machine's speed drifts over minutes, and one baseline
    measured minutes away judged a run made in a slow (or fast) stretch.
    Returns the library's measurements, in order.
    """
    runs = [library()]
    for count in connections:
        block = []
        for case in cases:
            before = meter.read()
            result = load(case, count, profile=count == max(connections))
            after = meter.read()
            result.cpu_ms_per_request = meter.per_request(before, after, result.requests)
            results.append(result)
            block.append(result)
        runs.append(library())
        around = (runs[-2]["ops_per_s"] + runs[-1]["ops_per_s"]) / 2
        for result in block:
            result.library_ops_per_s = round(around, 1)
            _print_result(result)
    return runs


# ---------------------------------------------------------------- the run
def run(
    *,
    connections: Sequence[int],
    duration: float,
    threads: int,
    accounts: int,
    payment_rate: float,
    workdir: Path,
    cases: Sequence[str] = CASES,
    replicas: Mapping[str, int] | None = None,
    py_spy: Path | None = None,
) -> dict[str, Any]:
    """Start the stack, load it case by case, measure the library's path, check the stock."""
    replicas = dict(replicas or {})
    env = {
        "ENVIRONMENT": "production",
        "JWT_ACCESS_SECRET": secrets.token_urlsafe(48),
        "ADMIN_EMAILS": ADMIN_EMAIL,
        "LOG_LEVEL": "WARNING",
        "RESERVATION_TTL_SECONDS": "7200",  # no hold expires during the run
        "PAYMENT_SUCCESS_RATE": "1",
        "COMMERCEKIT_JWT_ACCESS_TTL": "7200",
        # The holds outlive the run, so hundreds of thousands stay PENDING, and a
        # reconciliation round compares each of them: a periodic cost of its own
        # (docs/benchmarks.md), kept out of the per-request numbers.
        "RECONCILE_INTERVAL_SECONDS": "3600",
    }
    services = [
        ServiceSpec(s.name, s.factory, s.placeholder, replicas.get(s.name, s.replicas), s.env)
        for s in SERVICES
    ]
    results: list[HttpResult] = []
    stack = LocalStack(workdir, env=env, services=services, with_servers=True)
    with stack, httpx.Client(base_url=stack.gateway_url, timeout=30) as http:
        assert stack.backing is not None
        database_url = stack.backing.env()["DATABASE_URL"]
        user_ids = asyncio.run(_create_accounts(database_url, accounts))
        tokens_file = workdir / "tokens.txt"
        tokens = _tokens(env, user_ids)
        tokens_file.write_text("\n".join(tokens) + "\n")
        admin = _sign_in_admin(http)
        hot = _create_product(http, admin, "BENCH-HOT")
        cart = [_create_product(http, admin, f"BENCH-CART-{i}") for i in range(3)]
        paid = _create_product(http, admin, "BENCH-PAY")

        base = stack.gateway_url
        reserve_body = json.dumps({"productId": hot, "quantity": 1})
        cart_body = json.dumps({"items": [{"productId": p, "quantity": 1} for p in cart]})
        reserve = "/api/v1/inventory/reserve"
        scripts: dict[str, dict[str, Any]] = {
            "reserve": {"method": "POST", "path": reserve, "body": reserve_body},
            "reserve+key": {
                "method": "POST",
                "path": reserve,
                "body": reserve_body,
                "idempotency_keys": True,
            },
            "cart3": {"method": "POST", "path": reserve, "body": cart_body},
            "products": {"method": "GET", "path": "/api/v1/products", "tokens": False},
            "health": {"method": "GET", "path": "/health", "tokens": False},
        }

        def load(
            case: str, count: int, seconds: float = duration, *, profile: bool = False
        ) -> HttpResult:
            options = dict(scripts[case])
            with_tokens = options.pop("tokens", True)
            script = workdir / f"{case.replace('+', '-')}.lua"
            # A fresh key prefix per run: a key of an earlier run would replay its hold.
            options["key_prefix"] = uuid.uuid4().hex[:8]
            script.write_text(wrk_script(tokens_file if with_tokens else None, **options))
            spies = _py_spy(stack, py_spy, case, seconds) if profile and py_spy else []
            output = run_wrk(
                base + "/", connections=count, duration=seconds, threads=threads, script=script
            )
            for spy in spies:
                spy.wait(timeout=60)
            return parse_wrk(output, target=case, connections=count, duration=seconds)

        meter = CpuMeter(_stack_groups(stack))

        # Warm every path up (connections, caches, JIT-less Python's first calls).
        for case in cases:
            warm = load(case, 8, 2)
            warm.target = f"warm-up {case}"
            results.append(warm)
        library_runs = _load_in_blocks(
            connections,
            cases,
            load=load,
            meter=meter,
            results=results,
            library=lambda: _library(stack.backing, duration),
        )

        payments, announced = asyncio.run(
            _after_the_load(base, tokens, paid, database_url, rate=payment_rate, duration=duration)
        )
        print(
            f"stock watch: the load's journal announced {announced} s after it ended",
            file=sys.stderr,
            flush=True,
        )
        if payments is not None:
            print(
                f"payment path: {payments.confirmed}/{payments.payments} confirmed at "
                f"{payment_rate:g}/s, 202 -> confirmed p50 {payments.p50_ms:.1f} ms, "
                f"p99 {payments.p99_ms:.1f} ms, errors {payments.errors}",
                file=sys.stderr,
                flush=True,
            )

        levels = {
            product: http.get(f"/api/v1/products/{product}").json()["stock"]
            for product in (hot, *cart)
        }

    check = stock_check(
        results, taken={p: STOCK - levels[p] for p in (hot, *cart)}, hot=hot, cart=cart
    )
    return {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "accounts": accounts,
        "replicas": {spec.name: spec.replicas for spec in services},
        "records": [asdict(r) for r in results if not r.target.startswith("warm-up")],
        "payments": asdict(payments) if payments is not None else None,
        "journal_announced_s": announced,
        "library": {
            "system": library_runs[0]["system"],
            "concurrency": library_runs[0]["concurrency"],
            "ops_per_s": round(statistics.mean(run["ops_per_s"] for run in library_runs), 1),
            "p50_ms": statistics.median(run["p50_ms"] for run in library_runs),
            "p99_ms": statistics.median(run["p99_ms"] for run in library_runs),
            "errors": sum(run["errors"] for run in library_runs),
            "oversold": any(run["oversold"] for run in library_runs),
            "conserved": all(run["conserved"] for run in library_runs),
            "runs": [round(run["ops_per_s"], 1) for run in library_runs],
        },
        "check": check,
    }


def stock_check(
    results: Sequence[HttpResult], *, taken: Mapping[str, int], hot: str, cart: Sequence[str]
) -> dict[str, Any]:
    """Whether every 2xx reserve is exactly the units taken from its products.

    wrk stops with up to one request per connection in flight: served (its
    units held), never counted. So per product, the units taken are the
    201s counted plus at most one per connection of each run, never fewer.
    """

    def answered(*names: str) -> tuple[int, int]:
        runs = [r for r in results if r.target.removeprefix("warm-up ") in names]
        return sum(r.succeeded for r in runs), sum(r.connections for r in runs)

    hot_held, hot_in_flight = answered("reserve", "reserve+key")
    cart_held, cart_in_flight = answered("cart3")
    check: dict[str, Any] = {
        "hot_units_taken": taken[hot],
        "hot_reserves_answered_2xx": hot_held,
        "hot_in_flight_at_most": hot_in_flight,
        "cart_units_taken": [taken[p] for p in cart],
        "carts_answered_2xx": cart_held,
        "cart_in_flight_at_most": cart_in_flight,
        "reserve_errors": sum(r.errors for r in results if r.target in RESERVING),
    }
    check["consistent"] = (
        0 <= check["hot_units_taken"] - hot_held <= hot_in_flight
        and all(0 <= n - cart_held <= cart_in_flight for n in check["cart_units_taken"])
        and check["reserve_errors"] == 0
    )
    return check


def ratios(report: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Per case and connections: requests/s over the library's and over nginx's ``/health``."""
    overall = report["library"]["ops_per_s"]
    health = {
        r["connections"]: r["ops_per_s"] for r in report["records"] if r["target"] == "health"
    }
    out: dict[str, dict[str, float]] = {}
    for r in report["records"]:
        if r["target"] == "health":
            continue
        key = f"{r['target']}@{r['connections']}"
        library = r.get("library_ops_per_s") or overall  # reports before the bracketing: one
        out[key] = {"vs_library": round(r["ops_per_s"] / library, 4) if library else 0.0}
        if health.get(r["connections"]):
            out[key]["vs_health"] = round(r["ops_per_s"] / health[r["connections"]], 4)
    return out


def markdown(report: Mapping[str, Any]) -> str:
    """The results as Markdown tables."""
    library = report["library"]
    groups = sorted(
        {name for r in report["records"] for name in r["cpu_ms_per_request"] if name != "total"}
    )
    lines = [
        "| case | connections | requests/s | p50 ms | p99 ms | errors | x library |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    ratio = ratios(report)
    for r in report["records"]:
        share = ratio.get(f"{r['target']}@{r['connections']}", {}).get("vs_library")
        lines.append(
            f"| {r['target']} | {r['connections']} | {r['ops_per_s']:,.0f} | "
            f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | "
            f"{'' if share is None else f'{share:.3f}'} |"
        )
    lines += [
        "",
        f"The library's durable path (`{library['system']}`, hot SKU, "
        f"{library['concurrency']} clients, same servers, same run): "
        f"{library['ops_per_s']:,.0f} reserves/s, p50 {library['p50_ms']:.1f} ms, "
        f"p99 {library['p99_ms']:.1f} ms"
        + (
            f"; measured before the first number of connections and after each "
            f"({', '.join(f'{ops:,.0f}' for ops in library['runs'])}/s), each run judged "
            "against the mean of the two measurements around it."
            if library.get("runs")
            else "."
        ),
        "",
        "CPU milliseconds per request, by process group:",
        "",
        "| case | connections | " + " | ".join(groups) + " | total |",
        "|---|---:|" + "---:|" * (len(groups) + 1),
    ]
    for r in report["records"]:
        cpu = r["cpu_ms_per_request"]
        cells = " | ".join(f"{cpu.get(name, 0):.3f}" for name in groups)
        lines.append(
            f"| {r['target']} | {r['connections']} | {cells} | {cpu.get('total', 0):.3f} |"
        )
    payments = report.get("payments")
    if payments:
        lines += [
            "",
            f"Payment path ({payments['rate_per_s']:g} payments/s for "
            f"{payments['duration_s']:g} s): {payments['confirmed']} of "
            f"{payments['payments']} confirmed; from the 202 of `POST /api/v1/payment` to "
            f"the reservation's confirmation: p50 {payments['p50_ms']:.1f} ms, "
            f"p99 {payments['p99_ms']:.1f} ms; errors {payments['errors']}.",
        ]
    if report.get("journal_announced_s") is not None:
        lines += [
            "",
            f"The worker's stock watch had announced the load's journal "
            f"{report['journal_announced_s']:.1f} s after the load ended.",
        ]
    check = report["check"]
    lines += [
        "",
        f"Hot product: {check['hot_units_taken']:,} units taken, "
        f"{check['hot_reserves_answered_2xx']:,} reserves answered 201 (and at most "
        f"{check['hot_in_flight_at_most']:,} in flight when wrk stopped); carts: "
        f"{check['carts_answered_2xx']:,} answered 201 (at most "
        f"{check['cart_in_flight_at_most']:,} in flight), units taken per cart product "
        f"{', '.join(f'{n:,}' for n in check['cart_units_taken'])} (warm-ups included). "
        f"Every 201 is exactly the units held, nothing oversold, no errors: "
        f"{'yes' if check['consistent'] else 'NO'}.",
        f"{report['accounts']:,} accounts and tokens, round-robin; replicas "
        + ", ".join(f"{name} {n}" for name, n in report["replicas"].items())
        + f"; {report['machine']['cpus']} CPUs, Python {report['machine']['python']}; "
        f"{report['created']}.",
    ]
    return "\n".join(lines) + "\n"


def plot(before: Mapping[str, Any], after: Mapping[str, Any], out: Path) -> None:
    """Requests/s and p99 of the reserve case against connections, before and after."""
    import matplotlib  # noqa: PLC0415 (the bench extra)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (rate_ax, p99_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for label, report, style in (("before", before, "o--"), ("after", after, "o-")):
        rows = sorted(
            (r for r in report["records"] if r["target"] == "reserve"),
            key=lambda r: r["connections"],
        )
        xs = [r["connections"] for r in rows]
        rate_ax.plot(xs, [r["ops_per_s"] for r in rows], style, label=label)
        p99_ax.plot(xs, [r["p99_ms"] for r in rows], style, label=label)
    library = after["library"]["ops_per_s"]
    rate_ax.axhline(0.25 * library, color="grey", linewidth=0.8, linestyle=":")
    rate_ax.annotate("0.25 x library", (16, 0.25 * library), fontsize=8, color="grey")
    p99_ax.axhline(50, color="grey", linewidth=0.8, linestyle=":")
    for ax, title, unit in (
        (rate_ax, "POST /api/v1/inventory/reserve", "requests/s"),
        (p99_ax, "p99 latency", "ms"),
    ):
        ax.set_xscale("log", base=2)
        ax.set_xticks([16, 64, 256], labels=["16", "64", "256"])
        ax.set_xlabel("connections")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.set_ylim(bottom=0)
        ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, run, write ``benchmarks/results/<name>.{json,md}``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.http", description=__doc__)
    parser.add_argument("--connections", default="16,64,256", help="comma-separated")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--accounts", type=int, default=1000, help="shoppers and their tokens")
    parser.add_argument("--payment-rate", type=float, default=20.0, help="payments/s (0: none)")
    parser.add_argument(
        "--cases", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES)
    )
    parser.add_argument(
        "--replicas",
        action="append",
        default=[],
        metavar="SERVICE=N",
        help="processes of a service (default: as python -m reference_app.launch runs them)",
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        metavar="DIR",
        help="profile every service with py-spy during each case at the most connections",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="http", help="file names of the results")
    parser.add_argument("--plot", action="store_true", help=f"only draw {PLOT.name}")
    args = parser.parse_args(argv)
    if args.plot:
        before = json.loads((args.out / "http-before.json").read_text())
        after = json.loads((args.out / "http.json").read_text())
        plot(before, after, PLOT)
        print(PLOT)
        return 0
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install wrk)")
    cases = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s): {', '.join(unknown)}")
    connections = [int(c) for c in args.connections.split(",") if c.strip()]
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        report = run(
            connections=connections,
            duration=args.duration,
            threads=args.threads,
            accounts=args.accounts,
            payment_rate=args.payment_rate,
            workdir=Path(tmp),
            cases=cases,
            replicas={k: int(v) for k, _, v in (r.partition("=") for r in args.replicas)},
            py_spy=args.py_spy,
        )
    report["ratios"] = ratios(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    (args.out / f"{args.name}.md").write_text(table)
    print(table)
    return 0 if report["check"]["consistent"] else 1


if __name__ == "__main__":
    sys.exit(main())
