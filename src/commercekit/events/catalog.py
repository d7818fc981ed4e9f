"""The event catalog: typed payloads, their versions, topics and partition keys.

```python
from commercekit.events import CATALOG, Envelope, ReservationExpired, TopicNames

event = Envelope.wrap(ReservationExpired(...), source="inventory")
TopicNames(prefix="shop.").for_type(event.type)  # "shop.reservations"
CATALOG.decode(event.to_json()) == event  # True
```

Every payload model (an `EventPayload`, from `commercekit.events.payload`,
re-exported here with its field types) names its event type (dotted, past
tense), its schema version, its logical topic and the field that is its
partition key. The
events of one reservation share a key (the reservation id) on each topic, so
Kafka keeps them in order; a user's events are keyed by the user id.

Contract rules: a payload model of version N reads every event of versions
1..N of its type (backward compatible: add optional fields only). A breaking
change bumps the version; a consumer refuses a version newer than its own,
so deploy consumers before producers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from commercekit.errors import (
    ConfigurationError,
    MalformedEvent,
    UnknownEventType,
    UnsupportedSchemaVersion,
)
from commercekit.events.envelope import Envelope
from commercekit.events.payload import Amount, Currency, EventPayload, Identifier

__all__ = [
    "CATALOG",
    "Amount",
    "Catalog",
    "Currency",
    "EventAllocation",
    "EventLine",
    "EventPayload",
    "Identifier",
    "OrderCancelled",
    "OrderCreated",
    "OrderFulfilled",
    "OrderReturned",
    "OrderUnits",
    "PaymentConfirmed",
    "PaymentFailed",
    "RefundCompleted",
    "RefundRequested",
    "ReservationConfirmed",
    "ReservationCreated",
    "ReservationExpired",
    "ReservationReleased",
    "ReturnedUnits",
    "StockAdjusted",
    "StockBackIn",
    "StockLow",
    "StockOut",
    "TopicNames",
    "UserCreated",
]


class EventLine(BaseModel):
    """One line of a reservation in an event: a SKU and a quantity."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sku: Identifier
    quantity: Annotated[int, Field(gt=0)]


# ---------------------------------------------------------------- users


class UserCreated(EventPayload):
    """A user signed up (the email service sends the welcome mail)."""

    event_type = "user.created"
    schema_version = 1
    topic = "users"
    key_field = "user_id"

    user_id: Identifier
    username: Identifier
    email: Annotated[str, StringConstraints(min_length=3, max_length=320, pattern=r"^[^@\s]+@\S+$")]


# ---------------------------------------------------------------- reservations


class EventAllocation(BaseModel):
    """Where units of a reservation are held: a SKU, a location and a quantity.

    `backordered` of them (version 3) were taken beyond the stock there.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    sku: Identifier
    location: Identifier
    quantity: Annotated[int, Field(gt=0)]
    backordered: Annotated[int, Field(ge=0)] = Field(
        default=0, description="units held beyond the stock, owed until it arrives (version 3)"
    )


class _ReservationEvent(EventPayload):
    topic = "reservations"
    key_field = "reservation_id"

    reservation_id: Identifier
    owner: Identifier = Field(description="the user the stock is held for")
    lines: tuple[EventLine, ...] = Field(min_length=1)
    allocations: tuple[EventAllocation, ...] = Field(
        default=(),
        description="where the units are held (version 2; none: all at the default location)",
    )


class ReservationCreated(_ReservationEvent):
    """Stock was held for a cart until `expires_at`."""

    event_type = "reservation.created"
    schema_version = 3

    expires_at: AwareDatetime


class ReservationConfirmed(_ReservationEvent):
    """The reservation was paid for: its units are sold."""

    event_type = "reservation.confirmed"
    schema_version = 3

    payment_id: Identifier | None = None


class ReservationReleased(_ReservationEvent):
    """The reservation was cancelled (by its owner or a failed payment): stock is back."""

    event_type = "reservation.released"
    schema_version = 3

    reason: str | None = Field(default=None, max_length=500)


class ReservationExpired(_ReservationEvent):
    """The reservation's deadline passed before it was paid for: stock is back."""

    event_type = "reservation.expired"
    schema_version = 3

    expired_at: AwareDatetime


# ---------------------------------------------------------------- payments and refunds


class _MoneyEvent(EventPayload):
    key_field = "reservation_id"

    payment_id: Identifier
    reservation_id: Identifier
    user_id: Identifier
    amount: Amount
    currency: Currency


class PaymentConfirmed(_MoneyEvent):
    """The processor accepted the payment for a reservation."""

    event_type = "payment.confirmed"
    schema_version = 1
    topic = "payments"


class PaymentFailed(_MoneyEvent):
    """The processor refused the payment for a reservation."""

    event_type = "payment.failed"
    schema_version = 1
    topic = "payments"

    reason: str = Field(min_length=1, max_length=500)


class RefundRequested(_MoneyEvent):
    """A payment must be refunded (a late payment, a double payment, a wrong amount)."""

    event_type = "refund.requested"
    schema_version = 1
    topic = "refunds"

    refund_id: Identifier
    reason: str = Field(min_length=1, max_length=500)


class RefundCompleted(_MoneyEvent):
    """The processor refunded the payment."""

    event_type = "refund.completed"
    schema_version = 1
    topic = "refunds"

    refund_id: Identifier


# ---------------------------------------------------------------- orders


class OrderUnits(BaseModel):
    """Units of an order at one location: a SKU, a location and a quantity."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sku: Identifier
    location: Identifier
    quantity: Annotated[int, Field(gt=0)]


OrderStatusName = Annotated[str, StringConstraints(min_length=1, max_length=24)]


class _OrderEvent(EventPayload):
    topic = "orders"
    key_field = "order_id"

    order_id: Identifier = Field(description="the order's id: its reservation's")
    owner: Identifier = Field(description="the user who bought it")
    lines: tuple[OrderUnits, ...] = Field(min_length=1)
    status: OrderStatusName = Field(
        description="the order's status after this event (OPEN, PARTIALLY_FULFILLED, "
        "FULFILLED, CANCELLED)"
    )


class OrderCreated(_OrderEvent):
    """A paid reservation became an order: its `lines` are committed where they were held."""

    event_type = "order.created"
    schema_version = 1


class OrderFulfilled(_OrderEvent):
    """Units of an order shipped: its `lines` left (a part of the order, or the rest)."""

    event_type = "order.fulfilled"
    schema_version = 1

    shipment_id: Identifier


class OrderCancelled(_OrderEvent):
    """Units of an order were cancelled before they shipped: its `lines` are back on sale."""

    event_type = "order.cancelled"
    schema_version = 1

    cancellation_id: Identifier


class ReturnedUnits(OrderUnits):
    """Units of an order back from the location they shipped from, and what became of them."""

    restock: Annotated[str, StringConstraints(min_length=1, max_length=24)] = Field(
        description="RESELL (on sale again there), DAMAGED (on hand, never sold again) or "
        "NONE (written off)"
    )
    restock_at: Identifier | None = Field(
        default=None, description="where RESELL units went on sale, when not where they shipped"
    )


class OrderReturned(_OrderEvent):
    """Shipped units of an order came back: its `lines`, each restocked as it says."""

    event_type = "order.returned"
    schema_version = 1

    lines: tuple[ReturnedUnits, ...] = Field(min_length=1)
    return_id: Identifier


# ----------------------------------------------------------------- stock

StockReasonName = Annotated[str, StringConstraints(min_length=1, max_length=16)]


class _StockEvent(EventPayload):
    topic = "stock"
    key_field = "sku"

    sku: Identifier
    location: Identifier
    available: int = Field(description="units on sale there after the change")
    on_hand: int = Field(description="units there after it: available, held and committed")
    journal_id: Annotated[int, Field(gt=0)] = Field(
        description="the stock journal's row of the change"
    )


class StockAdjusted(_StockEvent):
    """Units of a SKU were set, restocked or adjusted at a location (not sold, not returned)."""

    event_type = "stock.adjusted"
    schema_version = 1

    reason: StockReasonName = Field(description="set, restock, adjust or reconcile")
    change: int = Field(description="units added (below zero: taken off)")
    actor: Identifier | None = None


class StockLow(_StockEvent):
    """A SKU's available units at a location fell to its low-stock threshold or below it."""

    event_type = "stock.low"
    schema_version = 1

    threshold: Annotated[int, Field(ge=0)]


class StockOut(_StockEvent):
    """A SKU's available units at a location ran out (0, or below on backorder)."""

    event_type = "stock.out"
    schema_version = 1


class StockBackIn(_StockEvent):
    """A SKU that was out at a location has units available there again."""

    event_type = "stock.back_in"
    schema_version = 1


# ---------------------------------------------------------------- the catalog


class _Header(BaseModel):
    """The attributes needed to pick the payload model, and those without a default."""

    model_config = ConfigDict(extra="allow")

    id: str
    specversion: str
    time: str
    type: str
    schemaversion: int


class Catalog:
    """The event types a process knows: payload models by type.

    Immutable; `with_payloads` returns a bigger one, so a shop adds its own
    events to the built-in ones: ``CATALOG.with_payloads(GiftCardIssued)``.

    Args:
        payloads: the payload models; each type once.

    Raises:
        ConfigurationError: a model misses a class variable, or a type is repeated.
    """

    def __init__(self, payloads: Iterable[type[EventPayload]]) -> None:
        self._by_type: dict[str, type[EventPayload]] = {}
        for model in payloads:
            _check_payload(model)
            if model.event_type in self._by_type:
                raise ConfigurationError(f"event type {model.event_type!r} is registered twice")
            self._by_type[model.event_type] = model

    def with_payloads(self, *payloads: type[EventPayload]) -> Catalog:
        """A new catalog with these payload models added."""
        return Catalog([*self._by_type.values(), *payloads])

    def __getitem__(self, event_type: str) -> type[EventPayload]:
        try:
            return self._by_type[event_type]
        except KeyError:
            raise UnknownEventType(event_type) from None

    def __contains__(self, event_type: object) -> bool:
        return event_type in self._by_type

    def __iter__(self) -> Iterator[type[EventPayload]]:
        return iter(self._by_type.values())

    def __len__(self) -> int:
        return len(self._by_type)

    @property
    def types(self) -> tuple[str, ...]:
        """Every event type, in registration order."""
        return tuple(self._by_type)

    @property
    def topics(self) -> tuple[str, ...]:
        """Every logical topic, sorted."""
        return tuple(sorted({model.topic for model in self}))

    def types_on(self, topic: str) -> tuple[str, ...]:
        """The event types carried by a logical topic."""
        return tuple(t for t, model in self._by_type.items() if model.topic == topic)

    def decode(self, raw: bytes | str) -> Envelope[Any]:
        """Parse one event from its JSON, strictly (no type coercion, no unknown fields).

        Raises:
            UnknownEventType: the type is not in this catalog.
            UnsupportedSchemaVersion: the version is newer than the payload model's.
            MalformedEvent: anything else is wrong with the bytes.
        """
        try:
            header = _Header.model_validate_json(raw, strict=True)
        except ValidationError as exc:
            raise MalformedEvent(_reason(exc)) from None
        model = self[header.type]
        if header.schemaversion > model.schema_version:
            raise UnsupportedSchemaVersion(
                model.event_type, header.schemaversion, model.schema_version
            )
        try:
            return Envelope[model].model_validate_json(raw, strict=True)  # type: ignore[valid-type]
        except ValidationError as exc:
            raise MalformedEvent(_reason(exc)) from None


def _check_payload(model: type[EventPayload]) -> None:
    for name in ("event_type", "schema_version", "topic", "key_field"):
        if not hasattr(model, name):
            raise ConfigurationError(f"{model.__name__} does not set {name}")
    if model.key_field not in model.model_fields:
        raise ConfigurationError(f"{model.__name__}.key_field names no field: {model.key_field}")
    if not isinstance(model.schema_version, int) or model.schema_version < 1:
        raise ConfigurationError(f"{model.__name__}.schema_version must be a positive int")


def _reason(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "message"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


CATALOG = Catalog(
    [
        UserCreated,
        ReservationCreated,
        ReservationConfirmed,
        ReservationReleased,
        ReservationExpired,
        PaymentConfirmed,
        PaymentFailed,
        RefundRequested,
        RefundCompleted,
        OrderCreated,
        OrderFulfilled,
        OrderCancelled,
        OrderReturned,
        StockAdjusted,
        StockLow,
        StockOut,
        StockBackIn,
    ]
)
"""The built-in catalog: every event the commercekit services produce."""

_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


@dataclass(frozen=True)
class TopicNames:
    """The Kafka topic names: a prefix before each logical topic, and overrides.

    ``TopicNames(prefix="shop.")`` puts reservations on ``shop.reservations``;
    ``TopicNames(names={"reservations": "holds"})`` on ``holds``.

    Attributes:
        prefix: put before every name (including the dead-letter topic).
        names: logical topic -> the name to use instead (still prefixed).
        dead_letter: the dead-letter topic's name (prefixed).
        catalog: where the event types' logical topics are looked up.
    """

    prefix: str = ""
    names: Mapping[str, str] = field(default_factory=dict)
    dead_letter: str = "dead-letter"
    catalog: Catalog = field(default=CATALOG, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in [self.dead_letter_topic, *(self.topic(t) for t in self.catalog.topics)]:
            if not _TOPIC.match(name):
                raise ConfigurationError(
                    f"not a valid Kafka topic name: {name!r} (letters, digits, '.', '_', '-')"
                )

    def topic(self, logical: str) -> str:
        """The real name of a logical topic."""
        return self.prefix + self.names.get(logical, logical)

    def for_type(self, event_type: str) -> str:
        """The real topic an event type is published on."""
        return self.topic(self.catalog[event_type].topic)

    @property
    def dead_letter_topic(self) -> str:
        """Where messages that cannot be handled go."""
        return self.prefix + self.dead_letter

    def all(self) -> tuple[str, ...]:
        """Every real topic of the catalog, then the dead-letter topic."""
        return (*(self.topic(t) for t in self.catalog.topics), self.dead_letter_topic)
