"""``commercekit demo``: the command the reference app adds to ``commercekit``.

``reference_app/pyproject.toml`` publishes `demo` under the
``commercekit.commands`` entry-point group (see `commercekit.cli.Command`).
This module stays light, as ``commercekit --help`` imports it: the app is
imported only when the command runs.
"""

from __future__ import annotations

import argparse
import sys

from commercekit.cli import Command

__all__ = ["demo"]


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}")
    return port


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port",
        type=_port,
        default=8000,
        help="port to listen on; 0 picks a free one (default: %(default)s)",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument("--no-walk", action="store_true", help="serve only; skip the guided walk")


def _run(args: argparse.Namespace) -> int:
    try:
        from reference_app.demo.run import run_demo  # noqa: PLC0415 (keeps --help fast)
    except KeyboardInterrupt:  # Ctrl-C while the app is still being imported
        print("commercekit demo: stopped", file=sys.stderr)
        return 0
    return run_demo(host=args.host, port=args.port, walk_first=not args.no_walk)


demo = Command(
    help="run the reference app in this process (no servers needed) and walk through it",
    description=(
        "Serve the whole reference app on one local port, on embedded backends "
        "(SQLite, fakeredis, an in-memory event bus), play a guided walk against it, "
        "and keep serving until Ctrl-C. Environment knobs: RESERVATION_TTL_SECONDS, "
        "SWEEP_INTERVAL_SECONDS, PAYMENT_SUCCESS_RATE, ADMIN_EMAILS, LOG_LEVEL."
    ),
    arguments=_arguments,
    run=_run,
)
"""The ``demo`` command (entry point ``demo`` of the ``commercekit.commands`` group)."""
