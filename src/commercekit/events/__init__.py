"""Event contracts, the event bus, idempotent consumers and the transactional outbox.

```python
from commercekit.events import Envelope, InMemoryEventBus, ReservationExpired

bus = InMemoryEventBus()
bus.subscribe("email", notify_owner, types=["reservation.expired"])
async with bus:
    await bus.publish(Envelope.wrap(ReservationExpired(...), source="inventory"))
```

`KafkaEventBus` and `create_topics` need ``commercekit[kafka]``; `Outbox`,
`OutboxRelay` and `SqlProcessedEventStore`'s tables need
``commercekit[postgres]``. They are imported lazily, so the contracts and the
in-memory bus work without either.
"""

from typing import TYPE_CHECKING

from commercekit._lazy import lazy_attributes
from commercekit.events.bus import DeadLetter, EventBus, EventRetry, Handler
from commercekit.events.catalog import (
    CATALOG,
    Amount,
    Catalog,
    Currency,
    EventLine,
    EventPayload,
    Identifier,
    PaymentConfirmed,
    PaymentFailed,
    RefundCompleted,
    RefundRequested,
    ReservationConfirmed,
    ReservationCreated,
    ReservationExpired,
    ReservationReleased,
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
from commercekit.events.memory import InMemoryEventBus
from commercekit.events.observed import ObservedEventBus

if TYPE_CHECKING:
    from commercekit.events.kafka import KafkaEventBus, create_topics
    from commercekit.events.outbox import Outbox, OutboxRelay

    RetryPolicy = EventRetry  # deprecated: the old name of EventRetry

__all__ = [
    "CATALOG",
    "CONTENT_TYPE",
    "Amount",
    "Catalog",
    "Currency",
    "DeadLetter",
    "Envelope",
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
    "SessionHandler",
    "SqlClaims",
    "SqlProcessedEventStore",
    "TopicNames",
    "UserCreated",
    "create_topics",
    "idempotent",
]

_LAZY = {
    "KafkaEventBus": "commercekit.events.kafka",
    "create_topics": "commercekit.events.kafka",
    "Outbox": "commercekit.events.outbox",
    "OutboxRelay": "commercekit.events.outbox",
}

__getattr__ = lazy_attributes(__name__, _LAZY, renamed={"RetryPolicy": "EventRetry"})
