"""``commercekit demo``: serve the demo app with uvicorn, play the guided walk, stop on Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from typing import TextIO

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from reference_app.common import configure_logging
from reference_app.demo import walk
from reference_app.demo.main import WALK_ADMIN_EMAIL, create_app, demo_settings
from reference_app.settings import DemoSettings

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "base_url", "run_demo"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000

_DEMO_LOG_LEVEL = "WARNING"
"""The demo's log level unless ``LOG_LEVEL`` is set: the walk and the mails stay readable."""

_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}  # noqa: S104 (a mapping)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def base_url(host: str, port: int) -> str:
    """The URL a client on this machine reaches the demo at (``0.0.0.0`` -> ``127.0.0.1``)."""
    return f"http://{_url_host(_ANY_ADDRESS.get(host, host))}:{port}"


def _listen(host: str, port: int) -> socket.socket:
    """A bound socket; uvicorn serves on it (so a busy port is our error to report)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


async def _serve(server: uvicorn.Server, sock: socket.socket) -> bool:
    """Run `server` until it stops; False if it failed to start (uvicorn exits on that)."""
    try:
        await server.serve(sockets=[sock])
    except SystemExit:
        return False
    return server.started


async def _cancel(task: asyncio.Task[object] | None) -> None:
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _until_stopping(server: uvicorn.Server) -> None:
    while not server.should_exit:  # noqa: ASYNC110 (uvicorn has a flag, not an event)
        await asyncio.sleep(0.1)


async def serve_demo(
    app: FastAPI,
    sock: socket.socket,
    settings: DemoSettings,
    *,
    walk_first: bool,
    out: TextIO,
) -> int:
    """Serve `app` on `sock` until a signal stops uvicorn; the exit status.

    Prints the base URL once the app is up, then (if `walk_first`) plays
    the walk while serving. A signal during the walk stops the walk first.
    """
    host, port = sock.getsockname()[:2]
    url = base_url(host, port)
    config = uvicorn.Config(
        app, log_config=None, access_log=False, ws="none", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(_serve(server, sock), name="demo-server")
    while not server.started and not serving.done():  # noqa: ASYNC110 (uvicorn's flag)
        await asyncio.sleep(0.05)
    if not server.started:
        if not await serving and not server.should_exit:
            print("commercekit demo: the app failed to start (see the log above)", file=sys.stderr)
            return 1
        return 0  # stopped (Ctrl-C) while starting
    if server.should_exit:  # Ctrl-C while starting
        await serving
        return 0
    print(f"commercekit demo: serving {url}", file=out)
    print(
        f"  the reference app's public API in one process (SQLite, fakeredis, in-memory bus)\n"
        f"  try:  curl {url}/api/v1/products\n"
        f"  API docs: {url}/docs (Swagger UI) or {url}/redoc (ReDoc), no internet needed\n"
        f"  holds last {settings.reservation_ttl_seconds} s, the sweeper runs every "
        f"{settings.sweep_interval_seconds:g} s, {settings.payment_success_rate:.0%} of "
        f"charges succeed; admins: {', '.join(sorted(settings.admin_emails))}\n"
        f"  mails are printed here as they are sent; press Ctrl-C to stop",
        file=out,
        flush=True,
    )
    walker = None
    if walk_first:
        walker = asyncio.create_task(
            walk.play(
                url,
                admin_email=WALK_ADMIN_EMAIL,
                reservation_ttl=settings.reservation_ttl_seconds,
                sweep_interval=settings.sweep_interval_seconds,
                out=out,
            ),
            name="demo-walk",
        )
    watcher = asyncio.create_task(_until_stopping(server), name="demo-stop-watch")
    try:
        await asyncio.wait({serving, watcher}, return_when=asyncio.FIRST_COMPLETED)
        await _cancel(walker)  # stop talking to a server that is going away
        await serving
    finally:
        for task in (walker, watcher, serving):
            await _cancel(task)
    return 0


def run_demo(
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    walk_first: bool = True,
    out: TextIO | None = None,
) -> int:
    """Run ``commercekit demo`` until Ctrl-C; the exit status.

    Settings come from the environment (`DemoSettings`, in development mode:
    ``RESERVATION_TTL_SECONDS``, ``SWEEP_INTERVAL_SECONDS``,
    ``PAYMENT_SUCCESS_RATE``, ``ADMIN_EMAILS``...), plus the walk's admin.
    """
    stream = out or sys.stdout
    try:
        given = DemoSettings(environment="development")
        settings = demo_settings(given)
    except ValidationError as exc:
        print(f"commercekit demo: invalid settings in the environment:\n{exc}", file=sys.stderr)
        return 2
    level = settings.log_level if "log_level" in given.model_fields_set else _DEMO_LOG_LEVEL
    configure_logging("demo", level)
    try:
        sock = _listen(host, port)
    except OSError as exc:
        print(
            f"commercekit demo: cannot listen on {_url_host(host)}:{port}: {exc.strerror or exc}"
            " (choose another with --port)",
            file=sys.stderr,
        )
        return 1
    with sock:
        app = create_app(settings)
        try:
            status = asyncio.run(serve_demo(app, sock, settings, walk_first=walk_first, out=stream))
        except KeyboardInterrupt:
            status = 0  # uvicorn re-raises the SIGINT it handled, once it has shut down
    if status == 0:
        print("commercekit demo: stopped", file=stream, flush=True)
    return status
