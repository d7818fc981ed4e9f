"""The ``commercekit`` command line.

```
commercekit --version
commercekit services up [--only redis,postgres,kafka] [--workdir DIR] [--env-file FILE]
commercekit sweep --redis-url URL [--database-url URL] [--prefix P] [--interval S] [--once]
commercekit events schema [--out DIR] [--format json|yaml] [--prefix P]
```
"""

from __future__ import annotations

import argparse
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


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
