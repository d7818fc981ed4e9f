"""The ``commercekit events`` commands (wired into `commercekit.cli`)."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_commands"]


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``events schema [--out DIR] [--format json|yaml] [--prefix P]``."""
    events = subparsers.add_parser("events", help="the event catalog's contracts")
    actions = events.add_subparsers(dest="events_command", metavar="ACTION")
    schema = actions.add_parser(
        "schema", help="write the JSON Schema of every event and an AsyncAPI document"
    )
    schema.add_argument(
        "--out", type=Path, help="folder to write into (default: print the AsyncAPI document)"
    )
    schema.add_argument(
        "--format",
        choices=["json", "yaml"],
        default="json",
        help="format of the AsyncAPI document (default: %(default)s; yaml needs PyYAML)",
    )
    schema.add_argument(
        "--prefix", default="", help="topic name prefix used in the AsyncAPI channels"
    )
    schema.set_defaults(handler=_schema)


def _schema(args: argparse.Namespace) -> int:
    from commercekit.errors import CommerceKitError  # noqa: PLC0415
    from commercekit.events.catalog import TopicNames  # noqa: PLC0415
    from commercekit.events.schema import asyncapi, write_schemas  # noqa: PLC0415

    try:
        topics = TopicNames(prefix=args.prefix)
        dump = _dumper(args.format)
    except (CommerceKitError, ImportError) as exc:
        print(f"commercekit: {exc}", file=sys.stderr)
        return 1
    if args.out is None:
        sys.stdout.write(dump(asyncapi(topics=topics)))
        return 0
    written = write_schemas(
        args.out, topics=topics, dump=dump, asyncapi_name=f"asyncapi.{args.format}"
    )
    for path in written:
        print(path)
    return 0


def _dumper(fmt: str) -> Any:
    if fmt == "json":
        return lambda document: json.dumps(document, indent=2) + "\n"
    try:
        yaml = importlib.import_module("yaml")
    except ImportError:
        raise ImportError("--format yaml needs PyYAML: pip install pyyaml") from None
    return lambda document: yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
