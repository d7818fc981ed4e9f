"""The docs render in headless Chromium with no network but loopback.

The browser's only route out is a proxy that refuses every connection, and
its only host name is the page server's address: a script or style fetched
from a CDN would fail, so a page that renders here needs nothing from the
internet. Covered: the demo's Swagger UI (``/docs``) and ReDoc (``/redoc``),
and the mkdocs site (its home page and a mkdocstrings reference page).
"""

from __future__ import annotations

import contextlib
import functools
import html
import inspect
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from commercekit.reservations.store import ReservationStore
from commercekit.testing.pytest_plugin import unavailable
from tests.integration.reference_app.test_demo import STARTUP_TIMEOUT, demo

ROOT = Path(__file__).resolve().parents[2]
BROWSER_TIMEOUT = 60.0
"""Seconds one browser run may take, start to exit."""
SCRIPT_BUDGET_MS = 15_000
"""Virtual time the page's scripts get (Chromium fast-forwards idle time)."""
BUILD_TIMEOUT = 300.0

RESERVE = ("post", "/api/v1/inventory/reserve")
"""The operation the API docs must show: placing a hold."""


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        unavailable("chromium is not installed (apt-get install chromium)")
    return found


@pytest.fixture(scope="module")
def dead_proxy() -> Iterator[str]:
    """host:port of a socket bound but not listening: every connection to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        host, port = sock.getsockname()
        yield f"{host}:{port}"


@pytest.fixture(scope="module")
def render(dead_proxy: str) -> functools.partial[str]:
    """``render(url)``: the page's DOM once its scripts ran, loaded offline."""
    return functools.partial(_render, _chromium(), dead_proxy)


def _render(browser: str, proxy: str, url: str) -> str:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        args = [
            browser,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",  # root in a container has no user namespace for the sandbox
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-breakpad",
            "--disable-background-networking",
            f"--user-data-dir={profile}",
            # Everything but the page server goes to a proxy that refuses;
            # `<-loopback>` drops Chromium's implicit bypass for 127.0.0.0/8.
            f"--proxy-server=http://{proxy}",
            "--proxy-bypass-list=<-loopback>;127.0.0.1",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            f"--virtual-time-budget={SCRIPT_BUDGET_MS}",
            "--dump-dom",
            url,
        ]
        proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: stopped as one below
        )
        try:
            out, err = proc.communicate(timeout=BROWSER_TIMEOUT)
        except subprocess.TimeoutExpired:
            out, err = "", f"chromium did not finish within {BROWSER_TIMEOUT:.0f} s"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # its helpers too, whatever happened
            proc.communicate()
    assert proc.returncode == 0, f"chromium failed on {url} ({proc.returncode}): {err[-2000:]}"
    return out


def _text(dom: str) -> str:
    """The page's text, tags dropped and white space folded."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", dom)).split())


@contextlib.contextmanager
def _static_server(folder: Path, host: str = "127.0.0.1") -> Iterator[str]:
    """A local HTTP server for `folder` in a thread; its base URL."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


# ---------------------------------------------------------------- the browser is offline


def test_the_browser_loads_nothing_but_the_page_server(
    render: functools.partial[str], tmp_path: Path
) -> None:
    # A script on another loopback address stands in for a CDN: were it
    # reachable, it would mark the page.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "mark.js").write_text("document.body.dataset.elsewhere = 'loaded';")
    page = tmp_path / "page"
    page.mkdir()
    (page / "mark.js").write_text("document.body.dataset.here = 'loaded';")
    with _static_server(elsewhere, host="127.0.0.2") as other:
        # The other server answers anyone but this browser.
        assert httpx.get(f"{other}/mark.js", timeout=10).status_code == 200
        (page / "index.html").write_text(
            "<!DOCTYPE html><html><body><p>page</p>"
            f'<script src="{other}/mark.js"></script><script src="mark.js"></script>'
            "</body></html>"
        )
        with _static_server(page) as url:
            dom = render(f"{url}/index.html")
    assert 'data-here="loaded"' in dom
    assert "data-elsewhere" not in dom


# ---------------------------------------------------------------- the demo's API docs


@pytest.fixture(scope="module")
def demo_url() -> Iterator[str]:
    """``commercekit demo --no-walk`` on a free port; its base URL."""
    with demo("--port", "0", "--no-walk") as run:
        url = run.wait_for(r"commercekit demo: serving (http://\S+)", STARTUP_TIMEOUT)[1]
        # The pages opened below are the ones the demo prints.
        printed = run.wait_for(
            r"API docs: (\S+) \(Swagger UI\) or (\S+) \(ReDoc\)", STARTUP_TIMEOUT
        )
        assert printed.groups() == (f"{url}/docs", f"{url}/redoc")
        method, path = RESERVE
        schema = httpx.get(f"{url}/openapi.json", timeout=10).json()
        assert method in schema["paths"][path], "the reserve operation moved: update RESERVE"
        yield url
        assert run.interrupt() == 0, run.report()


def test_swagger_ui_renders_the_reserve_operation_offline(
    render: functools.partial[str], demo_url: str
) -> None:
    dom = render(f"{demo_url}/docs")
    method, path = RESERVE
    # Swagger UI builds one block per operation; the HTML served has none.
    operation = re.search(
        rf'<div class="opblock opblock-{method}"[^>]*>.*?'
        rf'<span class="opblock-summary-method">{method.upper()}</span>.*?'
        rf'data-path="{re.escape(path)}"',
        dom,
    )
    assert operation, f"no {method.upper()} {path} on the rendered page:\n{dom[:2000]}"
    assert "commercekit reference app: demo service" in _text(dom)


def test_redoc_renders_the_reserve_operation_offline(
    render: functools.partial[str], demo_url: str
) -> None:
    dom = render(f"{demo_url}/redoc")
    method, path = RESERVE
    operation = re.search(
        rf'<span type="{method}" class="[^"]*http-verb {method}">{method}</span>'
        rf"<span[^>]*>{re.escape(path)}</span>",
        dom,
    )
    assert operation, f"no {method.upper()} {path} on the rendered page:\n{dom[:2000]}"
    assert re.search(r"<h1[^>]*>commercekit reference app: demo service", dom), dom[:2000]


# ---------------------------------------------------------------- the documentation site


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The mkdocs site, built into a temporary folder and served locally; its base URL."""
    folder = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--quiet", "--site-dir", str(folder)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-4000:]
    with _static_server(folder) as url:
        yield url


def _headings(page: Path, level: int) -> list[str]:
    """The text of a markdown page's headings of `level` (inline marks dropped)."""
    marks = "#" * level + " "
    lines = page.read_text(encoding="utf-8").splitlines()
    return [
        re.sub(r"[`*_]", "", line[len(marks) :]).strip() for line in lines if line.startswith(marks)
    ]


def test_the_site_home_page_renders_offline(render: functools.partial[str], site: str) -> None:
    dom = render(f"{site}/")
    text = _text(dom)
    (title,) = _headings(ROOT / "docs" / "index.md", 1)
    assert re.search(rf"<h1 [^>]*>{re.escape(title)}", dom), dom[:2000]
    sections = _headings(ROOT / "docs" / "index.md", 2)
    assert sections
    for section in sections:
        assert section in text, section
    # The theme's own script ran: it adds a copy button to every code block.
    assert re.search(r'<button class="md-code__button"[^>]*data-md-type="copy"', dom), dom[:2000]


def test_a_generated_reference_page_renders_offline(
    render: functools.partial[str], site: str
) -> None:
    dom = render(f"{site}/reference/reservations/")
    assert re.search(r'<h1 id="reservations">Reservations', dom), dom[:2000]
    # mkdocstrings' heading and the summary of the class's docstring.
    qualified = f"{ReservationStore.__module__}.{ReservationStore.__qualname__}"
    assert f'id="{qualified}"' in dom
    summary = (inspect.getdoc(ReservationStore) or "").splitlines()[0]
    assert summary
    assert summary in _text(dom)
    assert re.search(r'<button class="md-code__button"[^>]*data-md-type="copy"', dom)
