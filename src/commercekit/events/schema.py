"""The catalog as documents: JSON Schema per event, an AsyncAPI 3.0 description.

The AsyncAPI document describes each message's envelope (its ``traceparent``
and ``tracestate`` attributes included) and its Kafka record headers.

```python
from commercekit.events.schema import asyncapi, payload_schemas, write_schemas

write_schemas("docs/events")  # <type>.v<version>.json per event, and asyncapi.json
```

Or from the command line: ``commercekit events schema --out docs/events``.

`compatibility_problems` compares two JSON Schemas of one payload and lists
what would break a reader of the new one given data written for the old one
(a removed field, a new required field, a changed type, a tighter limit).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic.json_schema import models_json_schema

from commercekit import tracing
from commercekit._version import __version__
from commercekit.events.catalog import CATALOG, Catalog, EventPayload, TopicNames
from commercekit.events.envelope import (
    CONTENT_TYPE,
    TRACEPARENT_DESCRIPTION,
    TRACESTATE_DESCRIPTION,
    Envelope,
)

__all__ = [
    "asyncapi",
    "compatibility_problems",
    "envelope_schema",
    "payload_schema",
    "payload_schemas",
    "schema_file_name",
    "write_schemas",
]

JsonSchema = dict[str, Any]


def schema_file_name(model: type[EventPayload]) -> str:
    """``<type>.v<version>.json``: where a payload's schema is written."""
    return f"{model.event_type}.v{model.schema_version}.json"


def payload_schema(model: type[EventPayload]) -> JsonSchema:
    """The JSON Schema of a payload model (what its consumers accept), self-contained."""
    schema = model.model_json_schema(mode="validation")
    schema["x-event-type"] = model.event_type
    schema["x-schema-version"] = model.schema_version
    return schema


def payload_schemas(catalog: Catalog = CATALOG) -> dict[str, JsonSchema]:
    """Every payload's JSON Schema, by file name (see `schema_file_name`)."""
    return {schema_file_name(model): payload_schema(model) for model in catalog}


def envelope_schema(model: type[EventPayload]) -> JsonSchema:
    """The JSON Schema of a whole event of this type, envelope and payload."""
    schema = Envelope[model].model_json_schema(mode="validation")  # type: ignore[valid-type]
    _pin_envelope(schema, model)
    return schema


def _pin_envelope(schema: JsonSchema, model: type[EventPayload]) -> None:
    properties = schema["properties"]
    properties["type"] = {"const": model.event_type, "type": "string", "title": "Type"}
    properties["schemaversion"] |= {"maximum": model.schema_version}
    schema["title"] = f"{model.__name__} event"


def asyncapi(
    catalog: Catalog = CATALOG,
    topics: TopicNames | None = None,
    *,
    title: str = "commercekit events",
    version: str = __version__,
) -> dict[str, Any]:
    """An AsyncAPI 3.0 document: a channel per topic, a message per event type."""
    names = topics or TopicNames(catalog=catalog)
    models = list(catalog)
    refs, definitions = models_json_schema(
        [(Envelope[m], "validation") for m in models],  # type: ignore[valid-type]
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, JsonSchema] = definitions.get("$defs", {})
    messages: dict[str, Any] = {}
    for model in models:
        envelope_ref = refs[(Envelope[model], "validation")]["$ref"]  # type: ignore[valid-type]
        _pin_envelope(schemas[envelope_ref.rsplit("/", 1)[1]], model)
        messages[model.__name__] = {
            "name": model.event_type,
            "title": model.event_type,
            "summary": (model.__doc__ or "").strip().splitlines()[0],
            "contentType": CONTENT_TYPE,
            "payload": {"$ref": envelope_ref},
            "headers": {"$ref": "#/components/schemas/RecordHeaders"},
            "bindings": {
                "kafka": {
                    "key": {"type": "string", "description": f"the {model.key_field}"},
                    "bindingVersion": "0.5.0",
                }
            },
            "x-schema-version": model.schema_version,
        }
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for logical in catalog.topics:
        on_topic = [m for m in models if m.topic == logical]
        channels[logical] = {
            "address": names.topic(logical),
            "description": f"events: {', '.join(m.event_type for m in on_topic)}",
            "messages": {
                m.__name__: {"$ref": f"#/components/messages/{m.__name__}"} for m in on_topic
            },
        }
        for action in ("send", "receive"):
            operations[f"{action}_{logical}"] = {
                "action": action,
                "channel": {"$ref": f"#/channels/{logical}"},
                "messages": [
                    {"$ref": f"#/channels/{logical}/messages/{m.__name__}"} for m in on_topic
                ],
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": title,
            "version": version,
            "description": "CloudEvents 1.0 envelopes (structured JSON mode) on Kafka.",
        },
        "defaultContentType": CONTENT_TYPE,
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": {**schemas, **_record_headers()}},
    }


def _record_headers() -> dict[str, JsonSchema]:
    """The Kafka record headers every event carries (the trace context repeats the envelope's)."""
    return {
        "RecordHeaders": {
            "type": "object",
            "title": "Record headers",
            "properties": {
                "content-type": {"const": CONTENT_TYPE, "type": "string"},
                "traceparent": {
                    "type": "string",
                    "pattern": tracing.TRACEPARENT_PATTERN,
                    "description": TRACEPARENT_DESCRIPTION,
                },
                "tracestate": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": tracing.TRACESTATE_MAX_LENGTH,
                    "description": TRACESTATE_DESCRIPTION,
                },
            },
            "required": ["content-type"],
        }
    }


def write_schemas(
    out: str | Path,
    catalog: Catalog = CATALOG,
    topics: TopicNames | None = None,
    *,
    dump: Callable[[Any], str] | None = None,
    asyncapi_name: str = "asyncapi.json",
) -> list[Path]:
    """Write every payload's JSON Schema and the AsyncAPI document into `out`.

    Args:
        out: the folder (created if needed).
        catalog: the events to describe.
        topics: the topic names the AsyncAPI channels use.
        dump: turns the AsyncAPI document into text; indented JSON by default.
        asyncapi_name: the AsyncAPI file's name.

    Returns:
        The files written.
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in payload_schemas(catalog).items():
        path = folder / name
        path.write_text(_json(schema))
        written.append(path)
    path = folder / asyncapi_name
    path.write_text((dump or _json)(asyncapi(catalog, topics)))
    written.append(path)
    return written


def _json(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=False) + "\n"


# ---------------------------------------------------------------- compatibility


def compatibility_problems(old: JsonSchema, new: JsonSchema) -> list[str]:
    """What breaks when data valid under `old` is read with `new` (empty: compatible).

    Checks object fields (removed, newly required), types, enumerations and
    constants, string patterns and formats, and length and range limits,
    recursively through ``$ref``, ``anyOf``, arrays and objects.
    """
    return _Comparison(old, new).run()


class _Comparison:
    def __init__(self, old_root: JsonSchema, new_root: JsonSchema) -> None:
        self.old_root = old_root
        self.new_root = new_root
        self.problems: list[str] = []

    def run(self) -> list[str]:
        self.compare(self.old_root, self.new_root, "$")
        return self.problems

    def resolve(self, schema: JsonSchema, root: JsonSchema) -> JsonSchema:
        while "$ref" in schema:
            schema = root.get("$defs", {})[schema["$ref"].rsplit("/", 1)[1]]
        return schema

    def fits(self, old: JsonSchema, new: JsonSchema, where: str) -> bool:
        probe = _Comparison(self.old_root, self.new_root)
        probe.compare(old, new, where)
        return not probe.problems

    def compare(self, old: JsonSchema, new: JsonSchema, where: str) -> None:
        old, new = self.resolve(old, self.old_root), self.resolve(new, self.new_root)
        if "anyOf" in old or "anyOf" in new:
            for branch in old.get("anyOf", [old]):
                if not any(self.fits(branch, c, where) for c in new.get("anyOf", [new])):
                    kind = branch.get("type", branch.get("$ref", "a value"))
                    self.problems.append(f"{where}: {kind} is no longer accepted")
            return
        old_types, new_types = _types(old), _types(new)
        lost = old_types - new_types - ({"integer"} if "number" in new_types else set())
        if old_types and new_types and lost:
            self.problems.append(
                f"{where}: type changed from {sorted(old_types)} to {sorted(new_types)}"
            )
            return
        self.compare_values(old, new, where)
        if "items" in old and "items" in new:
            self.compare(old["items"], new["items"], f"{where}[]")
        if "properties" in old or "properties" in new:
            self.compare_objects(old, new, where)

    def compare_values(self, old: JsonSchema, new: JsonSchema, where: str) -> None:
        for key in ("const", "pattern", "format"):
            if key in new and new.get(key) != old.get(key):
                self.problems.append(
                    f"{where}: {key} changed from {old.get(key)!r} to {new[key]!r}"
                )
        if "enum" in new and not set(old.get("enum", [old.get("const")])) <= set(new["enum"]):
            self.problems.append(f"{where}: enum lost values")
        for key in ("minLength", "minItems", "minimum", "exclusiveMinimum"):
            if key in new and (key not in old or new[key] > old[key]):
                self.problems.append(f"{where}: {key} tightened to {new[key]}")
        for key in ("maxLength", "maxItems", "maximum", "exclusiveMaximum"):
            if key in new and (key not in old or new[key] < old[key]):
                self.problems.append(f"{where}: {key} tightened to {new[key]}")

    def compare_objects(self, old: JsonSchema, new: JsonSchema, where: str) -> None:
        old_props, new_props = old.get("properties", {}), new.get("properties", {})
        closed = new.get("additionalProperties") is False
        for name, schema in old_props.items():
            if name in new_props:
                self.compare(schema, new_props[name], f"{where}.{name}")
            elif closed:
                self.problems.append(
                    f"{where}.{name}: field removed (old data carrying it is refused)"
                )
        for name in sorted(set(new.get("required", [])) - set(old.get("required", []))):
            self.problems.append(f"{where}.{name}: field is newly required")


def _types(schema: JsonSchema) -> set[str]:
    kind = schema.get("type")
    if kind is None:
        return set()
    return {kind} if isinstance(kind, str) else set(kind)
