"""The ``commercekit`` command line.

```
commercekit --version
commercekit services up [--only redis,postgres,kafka] [--workdir DIR] [--env-file FILE]
commercekit sweep --redis-url URL [--database-url URL] [--prefix P] [--interval S] [--once]
commercekit events schema [--out DIR] [--format json|yaml] [--prefix P]
commercekit demo [--port 8000] [--host 127.0.0.1] [--no-walk]
```
"""

from __future__ import annotations

import argparse
import importlib.util
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from commercekit._version import __version__
from commercekit.events._cli import add_commands as event_commands
from commercekit.reservations._cli import add_commands as reservation_commands

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``commercekit`` command."""
    parser = argparse.ArgumentParser(
        prog="commercekit",
        description="Pluggable e-commerce backend primitives.",
    )
    parser.add_argument("--version", action="version", version=f"commercekit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    services = commands.add_parser(
        "services", help="run real Redis, PostgreSQL and Kafka on loopback ports"
    )
    services_commands = services.add_subparsers(dest="services_command", metavar="ACTION")
    up = services_commands.add_parser(
        "up", help="start the services, print their URLs, stop them on Ctrl-C"
    )
    up.add_argument(
        "--only",
        default="redis,postgres,kafka",
        help="comma-separated services to start (default: %(default)s)",
    )
    up.add_argument("--workdir", type=Path, help="data folder (default: a new temporary one)")
    up.add_argument("--env-file", type=Path, help="also write the URLs to this file")
    up.set_defaults(handler=_services_up)
    reservation_commands(commands)
    event_commands(commands)

    demo = commands.add_parser(
        "demo",
        help="run the reference app in this process (no servers needed) and walk through it",
        description=(
            "Serve the whole reference app on one local port, on embedded backends "
            "(SQLite, fakeredis, an in-memory event bus), play a guided walk against it, "
            "and keep serving until Ctrl-C. Environment knobs: RESERVATION_TTL_SECONDS, "
            "SWEEP_INTERVAL_SECONDS, PAYMENT_SUCCESS_RATE, ADMIN_EMAILS, LOG_LEVEL."
        ),
    )
    demo.add_argument(
        "--port",
        type=_port,
        default=8000,
        help="port to listen on; 0 picks a free one (default: %(default)s)",
    )
    demo.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    demo.add_argument("--no-walk", action="store_true", help="serve only; skip the guided walk")
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    status: int = handler(args)
    return status


def _services_up(args: argparse.Namespace) -> int:
    from commercekit.errors import CommerceKitError  # noqa: PLC0415
    from commercekit.testing.servers import ServiceStack  # noqa: PLC0415

    names = [name.strip() for name in args.only.split(",") if name.strip()]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="commercekit-services-"))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stack = ServiceStack(workdir, services=names)
        print(f"starting {', '.join(names)} under {workdir} ...", file=sys.stderr)
        with stack:
            lines = [f"{key}={value}" for key, value in stack.env().items()]
            if args.env_file:
                args.env_file.write_text("\n".join(lines) + "\n")
            print("\n".join(lines), flush=True)
            print("running; press Ctrl-C to stop", file=sys.stderr, flush=True)
            stop.wait()
            print("stopping ...", file=sys.stderr)
    except CommerceKitError as exc:
        print(f"commercekit: {exc}", file=sys.stderr)
        return 1
    return 0


_DEMO_MODULES = (
    "reference_app",
    "fastapi",
    "uvicorn",
    "httpx",
    "prometheus_client",
    "sqlalchemy",
    "alembic",
    "aiosqlite",
    "fakeredis",
    "lupa",
    "redis",
    "argon2",
    "jwt",
)
"""What ``commercekit demo`` imports: the reference app and the app and embedded extras."""

_DEMO_INSTALL = 'pip install "commercekit[demo]"'


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}")
    return port


def _demo(args: argparse.Namespace) -> int:
    missing = [name for name in _DEMO_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        print(
            f"commercekit demo needs the reference app and its extras ({', '.join(missing)} "
            f"missing): {_DEMO_INSTALL}",
            file=sys.stderr,
        )
        return 1
    try:
        from reference_app.demo.run import run_demo  # noqa: PLC0415 (optional extras)
    except ImportError as exc:
        print(f"commercekit demo: {exc}; {_DEMO_INSTALL}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C while the app is still being imported
        print("commercekit demo: stopped", file=sys.stderr)
        return 0
    status: int = run_demo(host=args.host, port=args.port, walk_first=not args.no_walk)
    return status


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
