"""Event contracts, the event bus, idempotent consumers and the transactional outbox.

```python
from commercekit.events import Envelope, InMemoryEventBus, ReservationExpired

bus = InMemoryEventBus()
bus.subscribe("email", notify_owner, types=["reservation.expired"])
async with bus:
    await bus.publish(Envelope.wrap(ReservationExpired(...), source="inventory"))
```

Every name here is imported from its module on first use, so importing one
module (``commercekit.events.envelope``, say) loads only what it needs.
`KafkaEventBus` and `create_topics` need ``commercekit[kafka]``; `Outbox`,
`OutboxRelay` and `SqlProcessedEventStore`'s tables need
``commercekit[postgres]``; the contracts and the in-memory bus work without
either.
"""

from typing import TYPE_CHECKING

from commercekit._lazy import lazy_attributes

if TYPE_CHECKING:
    from commercekit.events.bus import DeadLetter, EventBus, EventRetry, Handler
    from commercekit.events.catalog import (
        CATALOG,
        Catalog,
        EventAllocation,
        EventLine,
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
    from commercekit.events.envelope import CONTENT_TYPE, Envelope
    from commercekit.events.idempotency import (
        InMemoryProcessedEventStore,
        ProcessedEventStore,
        RedisProcessedEventStore,
        SessionHandler,
        SqlClaims,
        SqlProcessedEventStore,
        idempotent,
    )
    from commercekit.events.kafka import KafkaEventBus, create_topics
    from commercekit.events.memory import InMemoryEventBus
    from commercekit.events.observed import ObservedEventBus
    from commercekit.events.outbox import Outbox, OutboxRelay
    from commercekit.events.payload import Amount, Currency, EventPayload, Identifier

    RetryPolicy = EventRetry  # deprecated: the old name of EventRetry

__all__ = [
    "CATALOG",
    "CONTENT_TYPE",
    "Amount",
    "Catalog",
    "Currency",
    "DeadLetter",
    "Envelope",
    "EventAllocation",
    "EventBus",
    "EventLine",
    "EventPayload",
    "EventRetry",
    "Handler",
    "Identifier",
    "InMemoryEventBus",
    "InMemoryProcessedEventStore",
    "KafkaEventBus",
    "ObservedEventBus",
    "OrderCancelled",
    "OrderCreated",
    "OrderFulfilled",
    "OrderReturned",
    "OrderUnits",
    "Outbox",
    "OutboxRelay",
    "PaymentConfirmed",
    "PaymentFailed",
    "ProcessedEventStore",
    "RedisProcessedEventStore",
    "RefundCompleted",
    "RefundRequested",
    "ReservationConfirmed",
    "ReservationCreated",
    "ReservationExpired",
    "ReservationReleased",
    "ReturnedUnits",
    "SessionHandler",
    "SqlClaims",
    "SqlProcessedEventStore",
    "StockAdjusted",
    "StockBackIn",
    "StockLow",
    "StockOut",
    "TopicNames",
    "UserCreated",
    "create_topics",
    "idempotent",
]

_MODULES = {
    "commercekit.events.bus": ["DeadLetter", "EventBus", "EventRetry", "Handler"],
    "commercekit.events.catalog": [
        "CATALOG",
        "Catalog",
        "EventAllocation",
        "EventLine",
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
    ],
    "commercekit.events.envelope": ["CONTENT_TYPE", "Envelope"],
    "commercekit.events.idempotency": [
        "InMemoryProcessedEventStore",
        "ProcessedEventStore",
        "RedisProcessedEventStore",
        "SessionHandler",
        "SqlClaims",
        "SqlProcessedEventStore",
        "idempotent",
    ],
    "commercekit.events.kafka": ["KafkaEventBus", "create_topics"],
    "commercekit.events.memory": ["InMemoryEventBus"],
    "commercekit.events.observed": ["ObservedEventBus"],
    "commercekit.events.outbox": ["Outbox", "OutboxRelay"],
    "commercekit.events.payload": ["Amount", "Currency", "EventPayload", "Identifier"],
}

__getattr__ = lazy_attributes(
    __name__,
    {name: module for module, names in _MODULES.items() for name in names},
    renamed={"RetryPolicy": "EventRetry"},
)
