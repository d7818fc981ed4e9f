"""Contract evolution: schema snapshots, the compatibility check, the exported documents."""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from commercekit.events import CATALOG, Envelope, EventPayload
from commercekit.events._cli import add_commands
from commercekit.events.schema import (
    asyncapi,
    compatibility_problems,
    envelope_schema,
    payload_schema,
    schema_file_name,
)

from .test_contracts import EXAMPLES

SNAPSHOTS = Path(__file__).parent / "schemas"
DOCS = Path(__file__).parents[3] / "docs" / "events"
REGENERATE = "commercekit events schema --out tests/unit/events/schemas"


@pytest.mark.parametrize("model", list(CATALOG), ids=lambda m: m.event_type)
def test_every_payload_stays_backward_compatible_with_its_snapshot(
    model: type[EventPayload],
) -> None:
    """A change that breaks old events must bump schema_version (and add a snapshot)."""
    snapshot = SNAPSHOTS / schema_file_name(model)
    older = sorted(SNAPSHOTS.glob(f"{model.event_type}.v*.json"))
    assert snapshot.is_file(), (
        f"no snapshot of {model.event_type} v{model.schema_version} "
        f"(have {[p.name for p in older]}): review the change, then run `{REGENERATE}`"
    )
    problems = compatibility_problems(json.loads(snapshot.read_text()), payload_schema(model))
    assert not problems, (
        f"{model.event_type} v{model.schema_version} is not backward compatible with its "
        f"snapshot: {problems}; bump schema_version (a new snapshot follows) or undo the change"
    )


def test_no_snapshot_belongs_to_a_type_that_is_gone() -> None:
    names = {p.name for p in SNAPSHOTS.glob("*.v*.json")}
    types = {name.rsplit(".v", 1)[0] for name in names}
    assert types == set(CATALOG.types)


BASE: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "maxLength": 200},
        "count": {"type": "integer", "minimum": 0},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
        "lines": {"type": "array", "items": {"$ref": "#/$defs/Line"}},
    },
    "required": ["id", "count", "lines"],
    "$defs": {
        "Line": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"sku": {"type": "string"}},
            "required": ["sku"],
        }
    },
}


def changed(edit: Any) -> dict[str, Any]:
    schema = copy.deepcopy(BASE)
    edit(schema)
    return schema


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda s: s["properties"].pop("note"), "$.note: field removed"),
        (lambda s: s["required"].append("note"), "$.note: field is newly required"),
        (lambda s: s["properties"].update(count={"type": "string"}), "$.count: type changed"),
        (lambda s: s["properties"]["id"].update(maxLength=20), "$.id: maxLength tightened"),
        (lambda s: s["properties"].update(note={"type": "string"}), "$.note: null is no longer"),
        (
            lambda s: s["$defs"]["Line"]["properties"].update(sku={"type": "integer"}),
            "$.lines[].sku: type changed",
        ),
        (
            lambda s: s["$defs"]["Line"]["required"].append("qty"),
            "$.lines[].qty: field is newly required",
        ),
    ],
)
def test_the_compatibility_check_finds_breaking_changes(edit: Any, problem: str) -> None:
    problems = compatibility_problems(BASE, changed(edit))
    assert any(p.startswith(problem) for p in problems), problems


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s["properties"].update(extra={"type": "string", "default": ""}),
        lambda s: s["properties"]["id"].update(maxLength=500),
        lambda s: s["properties"].update(count={"type": "number"}),
        lambda s: s["properties"]["note"].update(description="documented now"),
        lambda s: s["required"].remove("count"),
    ],
)
def test_the_compatibility_check_accepts_compatible_changes(edit: Any) -> None:
    assert compatibility_problems(BASE, changed(edit)) == []


def test_the_asyncapi_document_describes_the_whole_catalog() -> None:
    document = asyncapi()
    assert document["asyncapi"] == "3.0.0"
    assert set(document["channels"]) == set(CATALOG.topics)
    messages = document["components"]["messages"]
    assert {m["name"] for m in messages.values()} == set(CATALOG.types)
    schemas = document["components"]["schemas"]
    for channel in document["channels"].values():
        for ref in channel["messages"].values():
            message = messages[ref["$ref"].rsplit("/", 1)[1]]
            envelope = schemas[message["payload"]["$ref"].rsplit("/", 1)[1]]
            assert envelope["properties"]["type"]["const"] == message["name"]
            assert "#/components/schemas/" in json.dumps(envelope["properties"]["data"])
    refs = [ref for ref in _refs(document) if ref.startswith("#/")]
    for ref in refs:  # every internal reference resolves
        node: Any = document
        for part in ref[2:].split("/"):
            node = node[part]


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


@pytest.mark.parametrize("payload", EXAMPLES, ids=lambda p: p.event_type)
def test_real_events_validate_against_the_exported_schemas(payload: EventPayload) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    wire = json.loads(Envelope.wrap(payload, source="tests").to_json())
    schema = envelope_schema(type(payload))
    jsonschema.validate(wire, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**wire, "type": "other.type"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({k: v for k, v in wire.items() if k != "id"}, schema)


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="commercekit")
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    status: int = args.handler(args)
    return status


def test_the_schema_command_writes_every_schema_and_the_asyncapi_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli("events", "schema", "--out", str(tmp_path), "--prefix", "shop.") == 0
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {schema_file_name(m) for m in CATALOG} | {"asyncapi.json"}
    document = json.loads((tmp_path / "asyncapi.json").read_text())
    assert document["channels"]["reservations"]["address"] == "shop.reservations"
    written = json.loads((tmp_path / "payment.failed.v1.json").read_text())
    assert written["x-event-type"] == "payment.failed"
    assert str(tmp_path / "asyncapi.json") in capsys.readouterr().out


def test_the_schema_command_prints_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    yaml = pytest.importorskip("yaml")
    assert run_cli("events", "schema", "--format", "yaml") == 0
    document = yaml.safe_load(capsys.readouterr().out)
    assert document["asyncapi"] == "3.0.0"


def test_the_schema_command_refuses_a_bad_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("events", "schema", "--prefix", "no spaces") == 1
    assert "not a valid Kafka topic name" in capsys.readouterr().err


def test_the_documentation_copy_of_the_schemas_is_current(tmp_path: Path) -> None:
    run_cli("events", "schema", "--out", str(tmp_path))
    for path in tmp_path.iterdir():
        published = DOCS / path.name
        assert published.is_file(), "run `commercekit events schema --out docs/events`"
        assert json.loads(published.read_text()) == json.loads(path.read_text()), (
            f"docs/events/{path.name} is stale: run `commercekit events schema --out docs/events`"
        )
