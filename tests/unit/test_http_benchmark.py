"""``python -m benchmarks.http``: its parsing, its wrk scripts and its stock check."""

from __future__ import annotations

import os
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from benchmarks.http import (
    CpuMeter,
    HttpResult,
    _load_in_blocks,
    markdown,
    parse_wrk,
    process_cpu_seconds,
    ratios,
    run_wrk,
    stock_check,
    wrk_script,
)

WRK_OUTPUT = """\
Running 10s test @ http://127.0.0.1:8080/
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    20.10ms   10.00ms 200.00ms   90.00%
  Latency Distribution
     50%   18.00ms
     75%   22.00ms
     90%   30.00ms
     99%    1.20s{TRAILING}
  12000 requests in 10.00s, 3.00MB read
  Non-2xx or 3xx responses: 5
  Socket errors: connect 0, read 1, write 0, timeout 2
Requests/sec:   1200.00
""".replace("{TRAILING}", " ")  # wrk pads some percentiles with a space


def _result(target: str, requests: int, connections: int = 16, errors: int = 0) -> HttpResult:
    return HttpResult(target, connections, 10, requests, errors, requests / 10, 1, 2, 3)


def test_wrk_output_is_parsed_with_every_error_counted() -> None:
    result = parse_wrk(WRK_OUTPUT, target="reserve", connections=64, duration=10)
    assert (result.requests, result.errors, result.ops_per_s) == (12000, 8, 1200.0)
    assert (result.p50_ms, result.p90_ms, result.p99_ms) == (18.0, 30.0, 1200.0)
    assert result.succeeded == 11992
    with pytest.raises(ValueError, match="unexpected wrk output"):
        parse_wrk("nothing", target="x", connections=1, duration=1)


def test_scripts_rotate_tokens_and_never_repeat_a_key(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("t1\nt2\nt3\n")
    first = wrk_script(tokens, method="POST", path="/r", body="{}", idempotency_keys=True)
    second = wrk_script(
        tokens, method="POST", path="/r", body="{}", idempotency_keys=True, key_prefix="run2"
    )
    assert "tokens[(n % #tokens) + 1]" in first
    assert str(tokens) in first
    assert '"bench-" .. (tid or 1)' in first
    assert '"run2-" .. (tid or 1)' in second
    public = wrk_script(None, path="/health")
    assert "Authorization" in public  # guarded by #tokens > 0
    assert "local file = nil" in public
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install wrk)")
    seen: list[tuple[str, str, str | None, str | None]] = []

    class Recorder(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(
                (self.command, self.path, self.headers["Authorization"],
                 self.headers["Idempotency-Key"])
            )  # fmt: skip
            self.send_response(201)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        script = tmp_path / "s.lua"
        script.write_text(first)
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        output = run_wrk(url, connections=2, duration=1, threads=2, script=script)
    finally:
        server.shutdown()
        server.server_close()
    assert parse_wrk(output, target="x", connections=2, duration=1).requests > 3
    assert {(method, path) for method, path, _, _ in seen} == {("POST", "/r")}
    assert {auth for _, _, auth, _ in seen} == {"Bearer t1", "Bearer t2", "Bearer t3"}
    keys = [key for _, _, _, key in seen]
    assert len(set(keys)) == len(keys)


def test_the_stock_check_allows_only_requests_in_flight_when_wrk_stopped() -> None:
    results = [
        _result("warm-up reserve", 100, connections=8),
        _result("reserve", 1000),
        _result("cart3", 50),
    ]
    taken = {"hot": 1100 + 10, "c1": 55, "c2": 50, "c3": 50}
    check = stock_check(results, taken=taken, hot="hot", cart=["c1", "c2", "c3"])
    assert check["consistent"]
    assert check["hot_in_flight_at_most"] == 24
    # More units taken than answered plus in flight: something was held without a 201.
    taken["hot"] = 1100 + 25
    assert not stock_check(results, taken=taken, hot="hot", cart=["c1", "c2", "c3"])["consistent"]
    # Fewer units taken than 201s answered: a 201 held nothing.
    taken["hot"] = 1099
    assert not stock_check(results, taken=taken, hot="hot", cart=["c1", "c2", "c3"])["consistent"]
    taken["hot"] = 1100
    results.append(_result("reserve+key", 10, errors=1))
    taken["hot"] = 1109
    assert not stock_check(results, taken=taken, hot="hot", cart=["c1", "c2", "c3"])["consistent"]


def test_cpu_is_read_per_process_tree_and_divided_per_request() -> None:
    assert process_cpu_seconds([os.getpid()]) > 0
    assert process_cpu_seconds([2**22 + 12345]) == 0  # gone: nothing, no error
    used = CpuMeter.per_request({"a": 1.0, "b": 2.0}, {"a": 1.5, "b": 2.1}, 1000)
    assert used == {"a": 0.5, "b": 0.1, "total": 0.6}
    assert CpuMeter.per_request({"a": 0.0}, {"a": 1.0}, 0) == {}


def test_ratios_and_tables_are_against_the_same_runs_library_path() -> None:
    report = {
        "records": [
            {**_result("reserve", 30000, 64).__dict__, "cpu_ms_per_request": {"inventory": 1.0}},
            {**_result("health", 900000, 64).__dict__, "cpu_ms_per_request": {"gateway": 0.01}},
        ],
        "library": {"system": "commercekit-durable", "concurrency": 64, "ops_per_s": 12000.0,
                    "p50_ms": 4.0, "p99_ms": 9.0},
        "payments": None,
        "check": {"hot_units_taken": 1, "hot_reserves_answered_2xx": 1,
                  "hot_in_flight_at_most": 0, "cart_units_taken": [0, 0, 0],
                  "carts_answered_2xx": 0, "cart_in_flight_at_most": 0, "consistent": True},
        "accounts": 1000,
        "replicas": {"inventory": 2},
        "machine": {"cpus": 2, "python": "3.11"},
        "created": "now",
    }  # fmt: skip
    assert ratios(report) == {"reserve@64": {"vs_library": 0.25, "vs_health": 0.0333}}
    table = markdown(report)
    assert "| reserve | 64 | 3,000 |" in table
    assert "0.250" in table
    assert "12,000 reserves/s" in table


def test_each_run_is_judged_against_the_library_measured_around_it() -> None:
    speeds = iter([10_000.0, 12_000.0, 8_000.0])  # the machine drifts between blocks
    order: list[str] = []

    def library() -> dict[str, float]:
        order.append("library")
        return {"ops_per_s": next(speeds)}

    def load(case: str, count: int, *, profile: bool) -> HttpResult:
        order.append(f"{case}@{count}")
        return _result(case, 33_000, count)

    class Meter(CpuMeter):
        def __init__(self) -> None:
            pass

        def read(self) -> dict[str, float]:
            return {"inventory": 0.0}

    results: list[HttpResult] = []
    runs = _load_in_blocks(
        [16, 64], ["reserve", "health"], load=load, meter=Meter(), results=results, library=library
    )
    assert order == [
        "library", "reserve@16", "health@16", "library", "reserve@64", "health@64", "library"
    ]  # fmt: skip
    assert [run["ops_per_s"] for run in runs] == [10_000, 12_000, 8_000]
    assert [r.library_ops_per_s for r in results] == [11_000, 11_000, 10_000, 10_000]
    report = {
        "records": [r.__dict__ for r in results],
        "library": {"system": "commercekit-durable", "concurrency": 64, "ops_per_s": 10_000.0,
                    "p50_ms": 4.0, "p99_ms": 9.0, "runs": [10_000.0, 12_000.0, 8_000.0]},
        "payments": None,
        "check": {"hot_units_taken": 1, "hot_reserves_answered_2xx": 1,
                  "hot_in_flight_at_most": 0, "cart_units_taken": [0, 0, 0],
                  "carts_answered_2xx": 0, "cart_in_flight_at_most": 0, "consistent": True},
        "accounts": 1000,
        "replicas": {"inventory": 1},
        "machine": {"cpus": 2, "python": "3.11"},
        "created": "now",
    }  # fmt: skip
    assert ratios(report)["reserve@16"]["vs_library"] == 0.3
    assert ratios(report)["reserve@64"]["vs_library"] == 0.33
    assert "10,000, 12,000, 8,000/s" in markdown(report)
