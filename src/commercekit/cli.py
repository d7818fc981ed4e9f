"""The ``commercekit`` command line, and the entry point other distributions add commands at.

```
commercekit --version
commercekit services up [--only redis,postgres,kafka] [--workdir DIR] [--env-file FILE]
commercekit sweep --redis-url URL [--database-url URL] [--prefix P] [--interval S] [--once]
commercekit events schema [--out DIR] [--format json|yaml] [--prefix P]
commercekit demo [--port 8000] [--host 127.0.0.1] [--no-walk]   (the reference app's)
```

Every other command comes from an installed distribution: a `Command`
published under the ``commercekit.commands`` entry-point group
(`COMMANDS_GROUP`), named by the entry point. The reference app
(``commercekit-reference-app``) adds ``demo`` that way; the library itself
never imports the app.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import Distribution, PackageNotFoundError, distribution, entry_points
from pathlib import Path
from urllib.parse import unquote, urlsplit

from commercekit._version import __version__
from commercekit.events._cli import add_commands as event_commands
from commercekit.reservations._cli import add_commands as reservation_commands

__all__ = ["COMMANDS_GROUP", "REFERENCE_APP", "Command", "build_parser", "main"]

COMMANDS_GROUP = "commercekit.commands"
"""The entry-point group ``commercekit`` finds the commands of other distributions in."""

REFERENCE_APP = "commercekit-reference-app"
"""The distribution of the reference app, which adds ``commercekit demo``."""


@dataclass(frozen=True, kw_only=True)
class Command:
    """A ``commercekit`` subcommand that an installed distribution adds.

    Publish it under the ``commercekit.commands`` entry-point group; the
    entry point's name is the command's name::

        # pyproject.toml of the package commercekit-hello
        [project.entry-points."commercekit.commands"]
        hello = "commercekit_hello:hello"

        # commercekit_hello.py
        from commercekit.cli import Command

        def arguments(parser):
            parser.add_argument("--name", default="world")

        def run(args):
            print(f"hello {args.name}")
            return 0

        hello = Command(help="say hello", arguments=arguments, run=run)

    ``commercekit --help`` loads every such entry point, so keep the module
    it names light and import what `run` needs inside `run`. A name taken by
    a built-in command, or by a distribution found first, is skipped with a
    warning. An entry point that fails to load, and a `run` that raises
    `ModuleNotFoundError`, make the command print the pip command that
    reinstalls its distribution, from where it was installed.

    Attributes:
        help: one line, shown by ``commercekit --help``.
        run: runs the command with the parsed arguments; returns the exit status.
        arguments: adds the command's options to its `argparse` parser.
        description: the text above the options of ``commercekit NAME --help``
            (default: `help`).
    """

    help: str
    run: Callable[[argparse.Namespace], int]
    arguments: Callable[[argparse.ArgumentParser], None] | None = None
    description: str | None = None


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

    _add_installed_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "any_arguments", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
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


# ------------------------------------------------------------ installed commands
_Subcommands = argparse._SubParsersAction  # the type `add_subparsers` returns


def _add_installed_commands(commands: _Subcommands[argparse.ArgumentParser]) -> None:
    """Add every `Command` of the `COMMANDS_GROUP` entry points, and ``demo`` in any case."""
    for entry in entry_points(group=COMMANDS_GROUP):
        owner = entry.dist.name if entry.dist is not None else entry.value
        if entry.name in commands.choices:
            print(
                f"commercekit: {owner} adds a command {entry.name!r}, which exists; skipped",
                file=sys.stderr,
            )
            continue
        try:
            command = entry.load()
            if not isinstance(command, Command):
                raise TypeError(f"{entry.value} is not a commercekit.cli.Command")
        except Exception as exc:
            _add_unavailable(
                commands,
                entry.name,
                f"{owner} failed to load it ({type(exc).__name__}: {exc}); "
                f"reinstall it: {_install_command(entry.dist, owner)}",
            )
            continue
        parser = commands.add_parser(
            entry.name, help=command.help, description=command.description or command.help
        )
        if command.arguments is not None:
            command.arguments(parser)
        parser.set_defaults(handler=_guarded(entry.name, command.run, entry.dist, owner))
    if "demo" not in commands.choices:
        _add_unavailable(
            commands,
            "demo",
            "comes with the reference app, which is not installed; install it with: "
            + _reference_app_install(Path.cwd(), _installed_from(_distribution("commercekit"))),
            help="run the reference app in one process (install the reference app first)",
        )


def _add_unavailable(
    commands: _Subcommands[argparse.ArgumentParser],
    name: str,
    problem: str,
    help: str | None = None,
) -> None:
    """A command that only says why it cannot run, whatever its arguments."""

    def report(_: argparse.Namespace) -> int:
        print(f"commercekit {name}: {problem}", file=sys.stderr)
        return 1

    parser = commands.add_parser(
        name, help=help or "(unavailable, run it to see why)", add_help=False
    )
    parser.set_defaults(handler=report, any_arguments=True)


def _guarded(
    name: str, run: Callable[[argparse.Namespace], int], dist: Distribution | None, owner: str
) -> Callable[[argparse.Namespace], int]:
    """`run`, which reports a missing module with the command that reinstalls `dist`."""

    def handler(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except ModuleNotFoundError as exc:
            print(
                f"commercekit {name}: {exc}; reinstall {owner} with its dependencies: "
                f"{_install_command(dist, owner)}",
                file=sys.stderr,
            )
            return 1

    return handler


def _distribution(name: str) -> Distribution | None:
    try:
        return distribution(name)
    except PackageNotFoundError:
        return None


def _installed_from(dist: Distribution | None) -> tuple[Path, bool] | None:
    """The local folder or archive `dist` was installed from (PEP 610), and if editable."""
    text = dist.read_text("direct_url.json") if dist is not None else None
    if not text:
        return None
    try:
        origin = json.loads(text)
        url = urlsplit(origin["url"])
    except (ValueError, KeyError, TypeError):
        return None
    path = Path(unquote(url.path))
    if url.scheme != "file" or not path.exists():
        return None
    return path, bool(origin.get("dir_info", {}).get("editable", False))


def _shown(path: Path, cwd: Path) -> str:
    """`path` as a user at `cwd` types it: ``./x`` below `cwd`, else absolute."""
    try:
        relative = path.relative_to(cwd)
    except ValueError:
        return shlex.quote(str(path))
    return shlex.quote(f".{os.sep}{relative}") if relative.parts else "."


def _install_command(dist: Distribution | None, name: str) -> str:
    """The pip command that (re)installs `dist`: from where it came if local, else by name."""
    source = _installed_from(dist)
    if source is None:
        return f"pip install {shlex.quote(name)}"
    path, editable = source
    return f"pip install {'-e ' if editable else ''}{_shown(path, Path.cwd())}"


def _is_clone(folder: Path) -> bool:
    return (folder / "reference_app" / "pyproject.toml").is_file() and (
        folder / "src" / "commercekit"
    ).is_dir()


def _reference_app_install(cwd: Path, library: tuple[Path, bool] | None) -> str:
    """The pip command that installs the reference app, from where the user is.

    In a clone of the repository (`cwd` or a folder above it, else the
    folder the library was installed from), its ``reference_app`` folder,
    editable if the library is; elsewhere the published distribution.
    """
    clone = next((folder for folder in (cwd, *cwd.parents) if _is_clone(folder)), None)
    if clone is None and library is not None and _is_clone(library[0]):
        clone = library[0]
    if clone is None:
        return f"pip install {REFERENCE_APP}"
    editable = library is not None and library[1]
    return f"pip install {'-e ' if editable else ''}{_shown(clone / 'reference_app', cwd)}"


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
