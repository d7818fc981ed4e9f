"""The envelope, the catalog and strict JSON (de)serialization."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any, ClassVar

import pytest

from commercekit.errors import (
    ConfigurationError,
    MalformedEvent,
    UnknownEventType,
    UnsupportedSchemaVersion,
)
from commercekit.events import (
    CATALOG,
    Catalog,
    Envelope,
    EventLine,
    EventPayload,
    OrderCancelled,
    OrderCreated,
    OrderFulfilled,
    OrderReturned,
    OrderUnits,
    PaymentConfirmed,
    PaymentFailed,
    RefundCompleted,
    RefundRequested,
    ReservationConfirmed,
    ReservationCreated,
    ReservationExpired,
    ReservationReleased,
    ReturnedUnits,
    StockAdjusted,
    StockBackIn,
    StockLow,
    StockOut,
    TopicNames,
    UserCreated,
)

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
LINES = (EventLine(sku="SKU-1", quantity=2), EventLine(sku="SKU-2", quantity=1))
UNITS = OrderUnits(sku="SKU-1", location="default", quantity=2)
MONEY: dict[str, Any] = {
    "payment_id": "pay-1",
    "reservation_id": "res-1",
    "user_id": "user-1",
    "amount": Decimal("12.50"),
    "currency": "EUR",
}

STOCK: dict[str, Any] = {
    "sku": "MUG", "location": "default", "available": 4, "on_hand": 6, "journal_id": 7,
}  # fmt: skip
EXAMPLES: list[EventPayload] = [
    UserCreated(user_id="user-1", username="ada", email="ada@example.com"),
    ReservationCreated(reservation_id="res-1", owner="user-1", lines=LINES, expires_at=NOW),
    ReservationConfirmed(reservation_id="res-1", owner="user-1", lines=LINES, payment_id="pay-1"),
    ReservationReleased(reservation_id="res-1", owner="user-1", lines=LINES, reason="cancelled"),
    ReservationExpired(reservation_id="res-1", owner="user-1", lines=LINES, expired_at=NOW),
    PaymentConfirmed(**MONEY),
    PaymentFailed(**MONEY, reason="card declined"),
    RefundRequested(**MONEY, refund_id="ref-1", reason="late payment"),
    RefundCompleted(**MONEY, refund_id="ref-1"),
    OrderCreated(order_id="res-1", owner="user-1", lines=(UNITS,), status="OPEN"),
    OrderFulfilled(
        order_id="res-1", owner="user-1", lines=(UNITS,), status="FULFILLED", shipment_id="p-1"
    ),
    OrderCancelled(
        order_id="res-1", owner="user-1", lines=(UNITS,), status="CANCELLED", cancellation_id="t-1"
    ),
    OrderReturned(
        order_id="res-1",
        owner="user-1",
        lines=(ReturnedUnits(sku="MUG", location="default", quantity=1, restock="RESELL"),),
        status="FULFILLED",
        return_id="rma-1",
    ),
    StockAdjusted(**STOCK, reason="restock", change=10, actor="admin:1"),
    StockLow(**STOCK, threshold=5),
    StockOut(**STOCK),
    StockBackIn(**STOCK),
]


def _wire(payload: EventPayload, **changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(Envelope.wrap(payload, source="tests").to_json())
    document.update(changes)
    return document


def test_examples_cover_the_whole_catalog() -> None:
    assert {p.event_type for p in EXAMPLES} == set(CATALOG.types)


@pytest.mark.parametrize("payload", EXAMPLES, ids=lambda p: p.event_type)
def test_every_event_round_trips_through_json(payload: EventPayload) -> None:
    event = Envelope.wrap(payload, source="tests", correlation_id="flow-1")
    decoded = CATALOG.decode(event.to_json())
    assert decoded == event
    assert type(decoded.data) is type(payload)
    assert decoded.schema_version == payload.schema_version


def test_the_envelope_carries_the_cloudevents_attributes() -> None:
    event = Envelope.wrap(EXAMPLES[1], source="inventory", correlation_id="flow-1", time=NOW)
    wire = json.loads(event.to_json())
    assert wire["specversion"] == "1.0"
    assert wire["type"] == "reservation.created"
    assert wire["source"] == "inventory"
    assert wire["subject"] == "res-1"
    assert wire["datacontenttype"] == "application/json"
    assert wire["schemaversion"] == ReservationCreated.schema_version == 3
    assert wire["correlationid"] == "flow-1"
    assert wire["time"] == "2026-01-02T03:04:05Z"
    assert len(wire["id"]) == 36
    assert Envelope.wrap(EXAMPLES[1], source="inventory").id != event.id


def test_follow_keeps_the_correlation_id() -> None:
    first = Envelope.wrap(EXAMPLES[5], source="payments")
    second = first.follow(EXAMPLES[2], source="inventory")
    assert second.correlation_id == first.id
    assert second.follow(EXAMPLES[0], source="x").correlation_id == first.id


@pytest.mark.parametrize(
    ("payload", "key", "topic"),
    [
        (EXAMPLES[0], "user-1", "users"),
        (EXAMPLES[1], "res-1", "reservations"),
        (EXAMPLES[4], "res-1", "reservations"),
        (EXAMPLES[5], "res-1", "payments"),
        (EXAMPLES[7], "res-1", "refunds"),
        (EXAMPLES[10], "res-1", "orders"),
        (EXAMPLES[11], "res-1", "orders"),
    ],
)
def test_each_type_maps_to_a_topic_and_a_partition_key(
    payload: EventPayload, key: str, topic: str
) -> None:
    event = Envelope.wrap(payload, source="tests")
    assert event.key == key
    assert TopicNames().for_type(event.type) == topic
    assert TopicNames(prefix="shop.").for_type(event.type) == f"shop.{topic}"


def test_topic_names_take_overrides_and_refuse_bad_names() -> None:
    names = TopicNames(prefix="p-", names={"reservations": "holds"}, dead_letter="dlq")
    assert names.for_type("reservation.expired") == "p-holds"
    assert names.dead_letter_topic == "p-dlq"
    assert set(names.all()) == {
        "p-holds", "p-users", "p-payments", "p-refunds", "p-orders", "p-stock", "p-dlq"
    }  # fmt: skip
    with pytest.raises(ConfigurationError, match="valid Kafka topic"):
        TopicNames(prefix="bad prefix ")


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda w: {**w, "data": {**w["data"], "amount": 12.5}}, "data.amount"),
        (lambda w: {**w, "data": {**w["data"], "amount": "-1"}}, "data.amount"),
        (lambda w: {**w, "data": {**w["data"], "user_id": 7}}, "data.user_id"),
        (lambda w: {**w, "data": {**w["data"], "surprise": 1}}, "data.surprise"),
        (lambda w: {k: v for k, v in w.items() if k != "id"}, "id"),
        (lambda w: {k: v for k, v in w.items() if k != "time"}, "time"),
        (lambda w: {**w, "specversion": "0.3"}, "specversion"),
        (lambda w: {**w, "time": "2026-01-02T03:04:05"}, "time"),
        (lambda w: {**w, "schemaversion": "1"}, "schemaversion"),
        (lambda w: {**w, "extension": "x"}, "extension"),
        (lambda w: {**w, "data": None}, "data"),
    ],
)
def test_decoding_is_strict(mutate: Any, reason: str) -> None:
    wire = mutate(_wire(EXAMPLES[5]))
    with pytest.raises(MalformedEvent) as info:
        CATALOG.decode(json.dumps(wire).encode())
    assert info.value.reason.startswith(reason)


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1, 2]", b"\xff\xfe", b'{"type": 1}'])
def test_garbage_is_a_malformed_event(raw: bytes) -> None:
    with pytest.raises(MalformedEvent):
        CATALOG.decode(raw)


def test_an_unknown_type_and_a_newer_version_are_refused() -> None:
    with pytest.raises(UnknownEventType) as unknown:
        CATALOG.decode(json.dumps(_wire(EXAMPLES[0], type="user.deleted")).encode())
    assert unknown.value.event_type == "user.deleted"
    with pytest.raises(UnsupportedSchemaVersion) as newer:
        CATALOG.decode(json.dumps(_wire(EXAMPLES[0], schemaversion=2)).encode())
    assert (newer.value.version, newer.value.supported) == (2, 1)
    assert isinstance(newer.value, MalformedEvent)


def test_amounts_are_decimal_strings_on_the_wire() -> None:
    wire = _wire(EXAMPLES[5])
    assert wire["data"]["amount"] == "12.50"
    decoded = CATALOG.decode(json.dumps(wire).encode())
    assert decoded.data.amount == Decimal("12.50")
    with pytest.raises(ValueError, match="amount"):
        PaymentConfirmed(**{**MONEY, "amount": 12.5})


class GiftCardIssued(EventPayload):
    event_type: ClassVar[str] = "giftcard.issued"
    schema_version: ClassVar[int] = 1
    topic: ClassVar[str] = "giftcards"
    key_field: ClassVar[str] = "card_id"

    card_id: str


def test_a_shop_extends_the_catalog_with_its_own_events() -> None:
    catalog = CATALOG.with_payloads(GiftCardIssued)
    assert "giftcard.issued" in catalog
    assert "giftcard.issued" not in CATALOG
    assert len(catalog) == len(CATALOG) + 1
    event = Envelope.wrap(GiftCardIssued(card_id="gc-1"), source="shop")
    assert catalog.decode(event.to_json()) == event
    assert TopicNames(prefix="s.", catalog=catalog).for_type("giftcard.issued") == "s.giftcards"
    assert catalog.types_on("giftcards") == ("giftcard.issued",)
    with pytest.raises(UnknownEventType):
        CATALOG.decode(event.to_json())


def test_the_catalog_refuses_duplicates_and_incomplete_models() -> None:
    with pytest.raises(ConfigurationError, match="twice"):
        CATALOG.with_payloads(UserCreated)

    class NoKey(EventPayload):
        event_type: ClassVar[str] = "thing.happened"
        schema_version: ClassVar[int] = 1
        topic: ClassVar[str] = "things"
        key_field: ClassVar[str] = "missing"

    with pytest.raises(ConfigurationError, match="key_field"):
        Catalog([NoKey])

    class NoVersion(EventPayload):
        event_type: ClassVar[str] = "thing.happened"
        topic: ClassVar[str] = "things"
        key_field: ClassVar[str] = "x"

        x: str

    with pytest.raises(ConfigurationError, match="schema_version"):
        Catalog([NoVersion])
