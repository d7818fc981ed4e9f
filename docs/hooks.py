"""mkdocs hooks: pages generated from the code at build time, so they cannot drift.

A page asks for a generated block with an HTML comment on a line of its own:

- ``<!-- generated: event-catalog -->``: every event type, from the catalog
  and its JSON Schemas;
- ``<!-- generated: http-api -->``: every route of the reference app's
  services, from their OpenAPI documents;
- ``<!-- generated: settings -->``: every environment variable the reference
  app reads, from its settings classes.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the reference app lives at the root, beside src/
    sys.path.insert(0, str(ROOT))

from pydantic_core import PydanticUndefined
from reference_app.inventory.main import create_app as inventory
from reference_app.payment.main import create_app as payment
from reference_app.settings import (
    EmailSettings,
    InventorySettings,
    PaymentSettings,
    UserSettings,
    WorkerSettings,
)
from reference_app.user.main import create_app as user

from commercekit.events import CATALOG, TopicNames
from commercekit.events.schema import payload_schema, schema_file_name

_MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.MULTILINE)


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


# ----------------------------------------------------------------- events
def _schema_type(spec: dict[str, Any]) -> str:
    if "$ref" in spec:
        return str(spec["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in spec:
        return " or ".join(_schema_type(s) for s in spec["anyOf"])
    if spec.get("type") == "array":
        return f"list of {_schema_type(spec.get('items', {}))}"
    return str(spec.get("type", "any"))


def _constraints(spec: dict[str, Any]) -> str:
    names = ("minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum", "pattern")
    parts = [f"{name} {spec[name]}" for name in names if name in spec]
    if "enum" in spec:
        parts.append("one of " + ", ".join(f"`{v}`" for v in spec["enum"]))
    return "; ".join(f"`{p}`" if p.startswith("pattern") else p for p in parts)


def event_catalog() -> str:
    """Each event type: its topic, key, version and fields."""
    topics = TopicNames()
    out: list[str] = []
    for event_type in CATALOG.types:
        model = CATALOG[event_type]
        schema = payload_schema(model)
        required = set(schema.get("required", []))
        out += [
            f"### `{event_type}`",
            "",
            str(schema.get("description", "")),
            "",
            f"Topic `{topics.topic(model.topic)}`, partition key `{model.key_field}`, "
            f"schema version {model.schema_version} "
            f"([JSON Schema](../events/{schema_file_name(model)})).",
            "",
            "| field | type | required | constraints |",
            "|---|---|---|---|",
        ]
        for name, spec in schema.get("properties", {}).items():
            out.append(
                f"| `{name}` | {_cell(_schema_type(spec))} | "
                f"{'yes' if name in required else 'no'} | {_cell(_constraints(spec))} |"
            )
        out.append("")
    return "\n".join(out)


# --------------------------------------------------------------- http api
def _apps() -> list[tuple[str, Any]]:
    development = {"environment": "development"}
    return [
        ("user", user(UserSettings(**development))),  # type: ignore[arg-type]
        ("inventory", inventory(InventorySettings(**development))),  # type: ignore[arg-type]
        ("payment", payment(PaymentSettings(**development))),  # type: ignore[arg-type]
    ]


def http_api() -> str:
    """Each service's routes: method, path, what it does, its answers."""
    out: list[str] = []
    for name, app in _apps():
        document = app.openapi()
        out += [
            f"### The {name} service",
            "",
            "| method | path | what it does | answers |",
            "|---|---|---|---|",
        ]
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                summary = (operation.get("description") or operation.get("summary", "")).strip()
                summary = re.sub(r"``([^`]+)``", r"`\1`", summary.split("\n\n", 1)[0])
                codes = ", ".join(sorted(operation.get("responses", {})))
                out.append(f"| {method.upper()} | `{path}` | {_cell(summary)} | {_cell(codes)} |")
        out.append("")
    return "\n".join(out)


# --------------------------------------------------------------- settings
def _attribute_docs(cls: type) -> dict[str, str]:
    """``name: text`` entries of the ``Attributes:`` sections of a class and its bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        text = klass.__doc__ or ""
        if "Attributes:" not in text:
            continue
        section = text.split("Attributes:", 1)[1]
        current: str | None = None
        for line in section.splitlines():
            entry = re.match(r"^\s{4,8}(\w+): (.*)$", line)
            if entry and not line.startswith(" " * 12):
                current = entry.group(1)
                docs[current] = entry.group(2).strip()
            elif current and line.strip():
                docs[current] += " " + line.strip()
            elif not line.strip() and current:
                current = None
    return docs


def settings() -> str:
    """Every variable the services read: default, services, meaning."""
    services = {
        "user": UserSettings,
        "inventory": InventorySettings,
        "worker": WorkerSettings,
        "payment": PaymentSettings,
        "email": EmailSettings,
    }
    users: dict[str, list[str]] = {}
    docs: dict[str, str] = {}
    fields: dict[str, Any] = {}
    for service, cls in services.items():
        docs.update(_attribute_docs(cls))
        for name, info in cls.model_fields.items():
            users.setdefault(name, []).append(service)
            fields[name] = info
    out = ["| variable | default | services | meaning |", "|---|---|---|---|"]
    for name, info in fields.items():
        variable = f"`{name.upper()}`"
        choices = [str(c).upper() for c in getattr(info.validation_alias, "choices", ())]
        extra = sorted(set(choices) - {name.upper()})
        if extra:
            variable += " (or " + ", ".join(f"`{c}`" for c in extra) + ")"
        default = info.default
        if default is PydanticUndefined or default is None:
            shown = ""
        elif isinstance(default, frozenset):
            shown = ", ".join(sorted(default))
        else:
            shown = f"`{default}`" if str(default) else ""
        used = users[name]
        who = "all" if len(used) == len(services) else ", ".join(used)
        meaning = re.sub(r"^``\w+``(?: \([^)]*\))?,\s*", "", docs.get(name, ""))
        meaning = re.sub(r"``([^`]+)``", r"`\1`", meaning)
        out.append(f"| {variable} | {_cell(shown)} | {who} | {_cell(meaning)} |")
    return "\n".join(out) + "\n"


GENERATORS: dict[str, Callable[[], str]] = {
    "event-catalog": event_catalog,
    "http-api": http_api,
    "settings": settings,
}


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Replace each ``<!-- generated: NAME -->`` line with its generated Markdown."""

    def generate(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise ValueError(f"no generator named {name!r} (known: {', '.join(GENERATORS)})")
        return GENERATORS[name]()

    return _MARKER.sub(generate, markdown)
