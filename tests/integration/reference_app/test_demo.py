"""``commercekit demo`` as a user runs it: serve, walk, answer the public API, stop on Ctrl-C."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from commercekit.testing.servers import free_port

ROOT = Path(__file__).resolve().parents[3]
STARTUP_TIMEOUT = 120.0  # imports and migrations; slow on a loaded CI machine
WALK_TIMEOUT = 180.0
STOP_TIMEOUT = 30.0


class Demo:
    """A ``python -m commercekit demo`` subprocess whose output is read as it comes."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "commercekit", "demo", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._new: queue.Queue[str | None] = queue.Queue()
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, True), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, False), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: object, stdout: bool) -> None:
        for line in stream:  # type: ignore[attr-defined]
            if stdout:
                self.lines.append(line.rstrip("\n"))
                self._new.put(line)
            else:
                self.errors.append(line.rstrip("\n"))
        if stdout:
            self._new.put(None)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def report(self) -> str:
        return f"--- stdout\n{self.output}\n--- stderr\n" + "\n".join(self.errors[-40:])

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first stdout line matching `pattern`; fails on timeout or exit."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        seen = 0
        while True:
            for line in self.lines[seen:]:
                found = regex.search(line)
                if found:
                    return found
            seen = len(self.lines)
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"no line matching {pattern!r} in {timeout:.0f} s\n{self.report()}")
            try:
                if self._new.get(timeout=min(left, 1.0)) is None:
                    pytest.fail(f"the demo exited ({self.proc.wait()})\n{self.report()}")
            except queue.Empty:
                pass

    def exit_status(self, timeout: float) -> int:
        """Wait for the exit and for the output to be read in full; the exit status."""
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the demo did not stop within {timeout:.0f} s\n{self.report()}")
        for reader in self._readers:
            reader.join(timeout)
        return status

    def interrupt(self) -> int:
        """Ctrl-C; the exit status."""
        self.proc.send_signal(signal.SIGINT)
        return self.exit_status(STOP_TIMEOUT)


@contextmanager
def demo(*args: str, **env: str) -> Iterator[Demo]:
    """Run the demo; kill it whatever happens."""
    environ = {
        key: value
        for key, value in os.environ.items()
        if key not in {"ADMIN_EMAILS", "LOG_LEVEL", "ENVIRONMENT", "JWT_ACCESS_SECRET"}
    }
    # The editable install only puts src/ on the path; the reference app sits at the root.
    environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), environ.get("PYTHONPATH", "")) if p
    )
    environ.update(env)
    running = Demo(list(args), environ)
    try:
        yield running
    finally:
        if running.proc.poll() is None:
            running.proc.kill()
        running.proc.wait(STOP_TIMEOUT)
        for stream in (running.proc.stdout, running.proc.stderr):
            if stream is not None:
                stream.close()


def test_demo_walks_through_the_flows_then_serves_until_ctrl_c() -> None:
    port = free_port()
    with demo("--port", str(port), RESERVATION_TTL_SECONDS="3", SWEEP_INTERVAL_SECONDS="1") as run:
        url = run.wait_for(r"commercekit demo: serving (http://\S+)", STARTUP_TIMEOUT)[1]
        assert url == f"http://127.0.0.1:{port}"
        run.wait_for(r"=== Walk complete|!!! walk failed", WALK_TIMEOUT)
        out = run.output
        assert "!!! walk failed" not in out, run.report()
        assert "admin@example.com has the admin role" in out  # ADMIN_EMAILS is unset
        assert "the shopper may not create products: 403" in out
        assert "payment confirmed: 25.00 USD" in out
        assert "payment succeeded email sent to ada-" in out
        assert "parcel-1: the order is PARTIALLY_FULFILLED, 1 committed" in out
        assert "parcel-2: the order is FULFILLED, 0 committed" in out
        assert re.search(r"refund completed: 12\.50 USD, reason ORDER_RETURNED", out), out
        assert re.search(r"journal: confirm 2 held -> committed \(\S+, by \S+\)", out), out
        assert re.search(r"journal: ship 1 committed -> shipped \(\S+parcel-1, by admin:", out)
        assert re.search(r"journal: return 1 shipped -> available \(\S+-rma-1, by admin:", out)
        assert "EXPIRED: the sweeper put its unit back" in out  # a 3 s hold is waited for
        assert re.search(r"payment refunded: 12\.50 USD, reason LATE_PAYMENT", out), out
        assert "refund issued email sent to ada-" in out
        assert "the gift box keeps no stock: 4 can be made" in out  # 8 mugs, 4 teas
        assert "1 gift box held: 2 mugs, 1 tea" in out
        assert "9 of 10 available" in out  # the returned mug is on sale again
        # The mails themselves went to the console.
        assert re.search(r"^Subject: .*ada-", out, re.MULTILINE), out
        product_id = re.search(r"product ([0-9a-f-]{36}): commercekit demo mug", out)
        assert product_id, out

        with httpx.Client(base_url=url, timeout=10) as client:
            products = client.get("/api/v1/products")
            assert products.status_code == 200
            assert product_id[1] in [p["id"] for p in products.json()]

            spoofed = client.post(
                "/api/v1/inventory/reserve",
                json={"productId": product_id[1], "quantity": 1},
                headers={"X-User-Id": "someone", "X-User-Role": "admin"},
            )
            assert spoofed.status_code == 401
            assert spoofed.json()["error"]["code"] == "unauthorized"
            assert client.get("/api/v1/auth/verify").status_code == 404

        assert run.interrupt() == 0, run.report()
        assert run.lines[-1] == "commercekit demo: stopped"


def test_no_walk_serves_and_stops_cleanly() -> None:
    port = free_port()
    with demo("--port", str(port), "--no-walk") as run:
        url = run.wait_for(r"commercekit demo: serving (http://\S+)", STARTUP_TIMEOUT)[1]
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.get("/ready").json()["status"] == "ready"
            assert client.get("/api/v1/products").json() == []
            signup = client.post(
                "/api/v1/auth/signup",
                json={"username": "grace", "email": "grace@example.com", "password": "pw-12345678"},
            )
            assert signup.status_code == 201
            login = client.post(
                "/api/v1/auth/login", json={"email": "grace@example.com", "password": "pw-12345678"}
            )
            token = login.json()["accessToken"]
            me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
            assert me.json()["role"] == "user"
            assert me.json()["id"] == login.json()["user"]["id"]
        assert run.interrupt() == 0, run.report()
        assert "Guided walk" not in run.output
        assert run.lines[-1] == "commercekit demo: stopped"


def test_a_busy_port_is_a_clear_error() -> None:
    with demo("--port", "0", "--no-walk") as first:
        url = first.wait_for(r"commercekit demo: serving (http://\S+)", STARTUP_TIMEOUT)[1]
        port = url.rsplit(":", 1)[1]
        with demo("--port", port, "--no-walk") as second:
            assert second.exit_status(STARTUP_TIMEOUT) == 1
            assert f"cannot listen on 127.0.0.1:{port}" in "\n".join(second.errors)
        assert first.interrupt() == 0
