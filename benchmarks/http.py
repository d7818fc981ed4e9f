"""``python -m benchmarks.http``: the reserve endpoint through the gateway, loaded by wrk.

Starts the reference app's local stack (every service behind nginx, on a
PostgreSQL, Redis and Kafka of the test harness), signs a shopper in,
creates one product with plenty of stock, then runs `wrk` (a C load
generator, ``apt-get install wrk``) against:

- ``POST /api/v1/inventory/reserve``: the token checked by nginx's
  ``auth_request`` against the user service, then the inventory service's
  hold (Redis Lua) and its ledger row (PostgreSQL);
- ``GET /health`` on the gateway: nginx alone, the ceiling of the setup.

It reports requests/s and latency percentiles, and checks the outcome: every
201 is one hold, and the product's available stock went down by exactly as
many units (no oversell, nothing lost). Results go to
``benchmarks/results/http.json`` and ``http.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from reference_app.launch import SERVICES, LocalStack, ServiceSpec

ROOT = Path(__file__).resolve().parent.parent
STOCK = 1_000_000  # the most one product may get; runs take far fewer
PASSWORD = "benchmark password 1"  # noqa: S105 (a throw-away user)
ADMIN_EMAIL = "bench-admin@example.com"

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


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


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(output: str, *, target: str, connections: int, duration: float) -> HttpResult:
    """The numbers of one ``wrk --latency`` run's output."""
    percentiles = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)$", output, re.MULTILINE))
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


def _wrk_script(folder: Path, token: str, product_id: str) -> Path:
    body = json.dumps({"productId": product_id, "quantity": 1})
    script = folder / "reserve.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {token}"\n'
    )
    return script


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


def _sign_in(http: httpx.Client, email: str) -> str:
    name = "b" + uuid.uuid4().hex[:12]
    http.post("/api/v1/auth/signup", json={"username": name, "email": email, "password": PASSWORD})
    login = http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    login.raise_for_status()
    token: str = login.json()["accessToken"]
    return token


def run(
    *,
    connections: Sequence[int],
    duration: float,
    threads: int,
    inventory_replicas: int,
    workdir: Path,
) -> dict[str, Any]:
    """Start the stack, run wrk at each number of connections, check the stock."""
    env = {
        "ENVIRONMENT": "production",
        "JWT_ACCESS_SECRET": secrets.token_urlsafe(48),
        "ADMIN_EMAILS": ADMIN_EMAIL,
        "LOG_LEVEL": "WARNING",
        "RESERVATION_TTL_SECONDS": "3600",  # no hold expires during the run
        "COMMERCEKIT_JWT_ACCESS_TTL": "3600",
    }
    replicas = {"inventory": inventory_replicas}
    services = [
        ServiceSpec(s.name, s.factory, s.placeholder, replicas.get(s.name, 1)) for s in SERVICES
    ]
    results: list[HttpResult] = []
    stack = LocalStack(workdir, env=env, services=services, with_servers=True)
    with stack, httpx.Client(base_url=stack.gateway_url, timeout=30) as http:
        admin = _sign_in(http, ADMIN_EMAIL)
        token = _sign_in(http, f"shopper-{uuid.uuid4().hex[:8]}@example.com")
        created = http.post(
            "/api/v1/inventory",
            json={"sku": "BENCH-1", "name": "Benchmark", "price": "1.00", "stock": STOCK},
            headers={"Authorization": f"Bearer {admin}"},
        )
        created.raise_for_status()
        product_id = created.json()["id"]
        script = _wrk_script(workdir, token, product_id)
        reserve_url = stack.gateway_url + "/api/v1/inventory/reserve"
        run_wrk(reserve_url, connections=8, duration=2, threads=threads, script=script)
        for count in connections:
            for target, url, lua in (
                ("gateway /health", stack.gateway_url + "/health", None),
                ("POST /api/v1/inventory/reserve", reserve_url, script),
            ):
                output = run_wrk(
                    url, connections=count, duration=duration, threads=threads, script=lua
                )
                result = parse_wrk(output, target=target, connections=count, duration=duration)
                results.append(result)
                print(
                    f"{target:32} c={count:<4} {result.ops_per_s:9.0f} req/s  "
                    f"p99 {result.p99_ms:7.1f} ms  errors {result.errors}",
                    file=sys.stderr,
                )
        stock = http.get(f"/api/v1/products/{product_id}").json()["stock"]
    reserves = [r for r in results if r.target.startswith("POST")]
    held = sum(r.requests - r.errors for r in reserves)
    warm = STOCK - stock - held  # the warm-up run's holds (its count is not parsed)
    return {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "inventory_replicas": inventory_replicas,
        "records": [asdict(r) for r in results],
        "check": {
            "units_taken": STOCK - stock,
            "holds_answered_201": held,
            "warm_up_holds": warm,
            "consistent": warm >= 0 and all(r.errors == 0 for r in reserves),
        },
    }


def markdown(report: dict[str, Any]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| target | connections | requests/s | p50 ms | p90 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["records"]:
        lines.append(
            f"| {r['target']} | {r['connections']} | {r['ops_per_s']:,.0f} | "
            f"{r['p50_ms']:.1f} | {r['p90_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} |"
        )
    check = report["check"]
    lines += [
        "",
        f"Units taken from the product: {check['units_taken']:,}; reserves answered 201 "
        f"(measured runs): {check['holds_answered_201']:,}, plus {check['warm_up_holds']:,} "
        f"in the warm-up. Every 201 is one unit held, nothing oversold: "
        f"{'yes' if check['consistent'] else 'NO'}.",
        f"Inventory replicas: {report['inventory_replicas']}; "
        f"{report['machine']['cpus']} CPUs, Python {report['machine']['python']}; "
        f"{report['created']}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, run, write ``benchmarks/results/http.{json,md}``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.http", description=__doc__)
    parser.add_argument("--connections", default="16,64", help="comma-separated, e.g. 16,64,256")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--inventory-replicas", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install wrk)")
    connections = [int(c) for c in args.connections.split(",") if c.strip()]
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        report = run(
            connections=connections,
            duration=args.duration,
            threads=args.threads,
            inventory_replicas=args.inventory_replicas,
            workdir=Path(tmp),
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "http.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    (args.out / "http.md").write_text(table)
    print(table)
    return 0 if report["check"]["consistent"] else 1


if __name__ == "__main__":
    sys.exit(main())
