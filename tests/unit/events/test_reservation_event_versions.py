"""Reservation events gained their allocations as schema version 2 and the backordered units
of each as version 3; the older versions still decode."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from commercekit.errors import UnsupportedSchemaVersion
from commercekit.events import (
    CATALOG,
    Envelope,
    EventAllocation,
    EventLine,
    ReservationConfirmed,
    ReservationCreated,
    ReservationReleased,
)

DOCS = Path(__file__).parents[3] / "docs" / "events"
EXPIRES = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def _v1_event(**payload: Any) -> bytes:
    """A reservation.created event as a producer of schema version 1 wrote it."""
    data = {
        "reservation_id": "r-1",
        "owner": "u-1",
        "lines": [{"sku": "MUG", "quantity": 2}],
        "expires_at": EXPIRES.isoformat(),
        **payload,
    }
    event = Envelope.wrap(ReservationCreated.model_validate(data), source="old-inventory")
    document = json.loads(event.to_json())
    document["schemaversion"] = 1
    del document["data"]["allocations"]
    return json.dumps(document).encode()


def _schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((DOCS / name).read_text())
    return schema


def test_the_reservation_events_are_version_3() -> None:
    for event_type in ("created", "confirmed", "released", "expired"):
        assert CATALOG[f"reservation.{event_type}"].schema_version == 3


def test_a_version_1_event_decodes_with_no_allocations() -> None:
    raw = _v1_event()
    assert "allocations" not in json.loads(raw)["data"]
    event = CATALOG.decode(raw)
    assert event.schema_version == 1
    assert isinstance(event.data, ReservationCreated)
    assert event.data.allocations == ()
    assert event.data.lines == (EventLine(sku="MUG", quantity=2),)
    # and it is what the published version-1 contract describes
    jsonschema.validate(json.loads(raw)["data"], _schema("reservation.created.v1.json"))


def test_a_version_2_event_carries_where_the_units_are() -> None:
    payload = ReservationReleased(
        reservation_id="r-2",
        owner="u-1",
        lines=(EventLine(sku="MUG", quantity=3),),
        allocations=(
            EventAllocation(sku="MUG", location="berlin", quantity=1),
            EventAllocation(sku="MUG", location="hamburg", quantity=2),
        ),
    )
    document = json.loads(Envelope.wrap(payload, source="inventory").to_json())
    document["schemaversion"] = 2
    for allocation in document["data"]["allocations"]:  # as a version-2 producer wrote it
        del allocation["backordered"]
    jsonschema.validate(document["data"], _schema("reservation.released.v2.json"))
    decoded = CATALOG.decode(json.dumps(document))
    assert decoded.schema_version == 2
    assert decoded.data == payload
    # Version 2 only adds: a version-1 payload is a valid version-2 one too.
    jsonschema.validate(json.loads(_v1_event())["data"], _schema("reservation.created.v2.json"))


def test_a_version_3_event_says_which_units_are_backordered() -> None:
    payload = ReservationConfirmed(
        reservation_id="r-3",
        owner="u-1",
        lines=(EventLine(sku="MUG", quantity=3),),
        allocations=(EventAllocation(sku="MUG", location="berlin", quantity=3, backordered=2),),
    )
    raw = Envelope.wrap(payload, source="inventory").to_json()
    decoded = CATALOG.decode(raw)
    assert decoded.schema_version == 3
    assert decoded.data == payload
    assert isinstance(decoded.data, ReservationConfirmed)
    assert decoded.data.allocations[0].backordered == 2
    jsonschema.validate(json.loads(raw)["data"], _schema("reservation.confirmed.v3.json"))
    with pytest.raises(jsonschema.ValidationError):  # a version-2 reader refuses the new field
        jsonschema.validate(json.loads(raw)["data"], _schema("reservation.confirmed.v2.json"))
    jsonschema.validate(json.loads(_v1_event())["data"], _schema("reservation.created.v3.json"))


def test_a_version_4_event_is_refused_as_newer() -> None:
    document = json.loads(_v1_event())
    document["schemaversion"] = 4
    with pytest.raises(UnsupportedSchemaVersion):
        CATALOG.decode(json.dumps(document))
