"""The `EventBus` protocol: publish events, consume them in groups.

```python
async def on_expired(event: Envelope[Any]) -> None:
    await release_stock(event.data)


bus.subscribe("inventory", on_expired, types=["reservation.expired"])
async with bus:
    await bus.publish(Envelope.wrap(payload, source="inventory"))
```

Consumer semantics, the same in every implementation:

- **Groups.** Every subscription names a consumer group. The partitions of a
  topic are shared among the members of a group (in one process or many);
  each group sees every event.
- **Order.** Events with one partition key (a reservation id, a user id) land
  on one partition and reach the handler one at a time, in publish order.
- **At least once, commit after success.** An event's offset is committed
  only after its handler returned. A crash or a rebalance may redeliver an
  event that was handled but not yet committed: make handlers idempotent
  (see `commercekit.events.idempotency`).
- **Bounded retries, then the dead-letter topic.** A handler that raises is
  called again after a growing pause (`EventRetry`); after the last attempt
  the message goes to the dead-letter topic with the reason, and the
  consumer moves on. Bytes that are not a valid event of the catalog
  (malformed, unknown type, newer schema version) go there at once.
- **Filtering.** An event of a known type the subscription did not ask for
  is skipped (and committed) without calling the handler.
- **Graceful shutdown.** `stop` lets every running handler finish and commits
  what was handled; an event waiting for a retry is left uncommitted, so it
  is delivered again later. Nothing is lost, nothing is half-handled.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, runtime_checkable

from commercekit._lazy import lazy_attributes
from commercekit.errors import ConfigurationError
from commercekit.events.envelope import Envelope
from commercekit.transient import is_transient

__all__ = ["DeadLetter", "EventBus", "EventRetry", "Handler"]

Handler = Callable[[Envelope[Any]], Awaitable[None]]
"""An async function called with each event; raising means "not handled, retry"."""

_HEADER = "commercekit-dlq-"


@dataclass(frozen=True)
class EventRetry:
    """How often, and how patiently, a failing handler is called again.

    Attempt ``n`` (1-based) that fails is followed by a pause of
    ``initial_backoff * multiplier ** (n - 1)`` seconds, at most `max_backoff`.

    A transient error means a dependency is down, not that the event is bad:
    the handler is called again, with the same growing pauses, until it
    succeeds or the bus stops, and such failures never count toward
    `max_attempts`. A payment event must wait out a Redis outage, or a
    PostgreSQL that is starting up, not land on the dead-letter topic.

    The buses retry handlers with it, the outbox relay pauses with its
    backoff after a failed batch. (An email sender's retries of an HTTP
    request are `commercekit.email.SendRetry`.) This policy was called
    ``RetryPolicy`` before; that name still works for a release, with a
    `DeprecationWarning`.

    Attributes:
        max_attempts: calls of the handler before the message is dead-lettered.
        initial_backoff: the first pause, in seconds.
        multiplier: how much each pause grows.
        max_backoff: the longest pause, in seconds.
        transient: which errors are retried without limit: a predicate,
            `commercekit.transient.is_transient` by default (every way
            Redis, PostgreSQL, Kafka and the network refuse for now, through
            SQLAlchemy's wrappers too), or a tuple of exception classes,
            which then alone decide (``()`` retries nothing without limit).
            To add your own cases to the default, pass a predicate that
            calls `is_transient`.
    """

    max_attempts: int = 5
    initial_backoff: float = 0.1
    multiplier: float = 2.0
    max_backoff: float = 5.0
    transient: tuple[type[BaseException], ...] | Callable[[BaseException], bool] = is_transient

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError("max_attempts must be at least 1")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ConfigurationError("backoffs must be >= 0 and the multiplier >= 1")

    def is_transient(self, exc: BaseException) -> bool:
        """Whether `exc` is retried without limit under this policy (see `transient`)."""
        if isinstance(self.transient, tuple):
            return isinstance(exc, self.transient)
        return self.transient(exc)

    def backoff(self, attempt: int) -> float:
        """The pause after failed attempt number `attempt` (1-based), in seconds."""
        return float(min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1)))


@dataclass(frozen=True)
class DeadLetter:
    """A message that could not be handled, as it sits on the dead-letter topic.

    The dead-letter record keeps the original key and bytes untouched; the
    other attributes travel as ``commercekit-dlq-*`` headers.

    Attributes:
        value: the original message's bytes (None for an empty message).
        key: the original message's key.
        reason: why it was dead-lettered, in one line.
        error: the exception's class name (``"MalformedEvent"``, ``"TimeoutError"``...).
        topic: the topic it was read from.
        partition: its partition there.
        offset: its offset there.
        group: the consumer group that gave up on it.
        attempts: how many times the handler was called (0 if it never was).
    """

    value: bytes | None
    key: bytes | None
    reason: str
    error: str
    topic: str
    partition: int
    offset: int
    group: str
    attempts: int

    def headers(self) -> list[tuple[str, bytes]]:
        """The Kafka headers that describe the failure."""
        fields = {
            "reason": self.reason,
            "error": self.error,
            "topic": self.topic,
            "partition": str(self.partition),
            "offset": str(self.offset),
            "group": self.group,
            "attempts": str(self.attempts),
        }
        return [(_HEADER + name, value.encode()) for name, value in fields.items()]

    @classmethod
    def from_record(
        cls, value: bytes | None, key: bytes | None, headers: Iterable[tuple[str, bytes]]
    ) -> DeadLetter:
        """Read a dead-letter record back (its value, key and headers)."""
        found = {
            name.removeprefix(_HEADER): raw.decode()
            for name, raw in headers
            if name.startswith(_HEADER)
        }
        return cls(
            value=value,
            key=key,
            reason=found.get("reason", ""),
            error=found.get("error", ""),
            topic=found.get("topic", ""),
            partition=int(found.get("partition", "-1")),
            offset=int(found.get("offset", "-1")),
            group=found.get("group", ""),
            attempts=int(found.get("attempts", "0")),
        )


@runtime_checkable
class EventBus(Protocol):
    """Publishes events and runs consumer groups (see the module for the semantics).

    Use it as an async context manager, or call `start` and `stop`.
    """

    async def publish(self, event: Envelope[Any]) -> None:
        """Publish one event and wait until the broker has it.

        The topic and partition key come from the catalog and the payload.

        Raises:
            PublishError: the broker did not acknowledge it; publishing again is safe.
        """
        ...

    async def publish_many(self, events: Sequence[Envelope[Any]]) -> None:
        """Publish events in order and wait until the broker has every one.

        Events with one partition key are stored in the order given.

        Raises:
            PublishError: some were not acknowledged (some may have been stored).
        """
        ...

    def subscribe(
        self, group: str, handler: Handler, *, types: Iterable[str] | None = None
    ) -> None:
        """Call `handler` for events, as a member of consumer `group`.

        Args:
            group: the consumer group; members share the partitions.
            handler: called with each event, one at a time per partition.
            types: the event types to handle (their topics are consumed);
                every type of the catalog by default.

        Raises:
            UnknownEventType: a type is not in the catalog.
        """
        ...

    async def start(self) -> None:
        """Connect and start every subscription's consumer."""
        ...

    async def stop(self) -> None:
        """Let running handlers finish, commit what was handled, disconnect."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


__getattr__ = lazy_attributes(__name__, renamed={"RetryPolicy": "EventRetry"})

if TYPE_CHECKING:
    RetryPolicy = EventRetry  # deprecated: the old name of EventRetry
