"""What every bus does with one message: decode, filter, call the handler, retry.

Each call of the handler runs in a span of its own, a child of the event's
``traceparent`` (or the root of a new trace for an event without one): what
the handler publishes carries the event's trace id.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from dataclasses import dataclass
from typing import Any

from commercekit import tracing
from commercekit.errors import ConfigurationError, MalformedEvent, NotReadyYet
from commercekit.events.bus import EventRetry, Handler
from commercekit.events.catalog import Catalog
from commercekit.events.envelope import Envelope

__all__ = ["Delivery", "Outcome", "check_group", "deliver", "wait_or_stop"]

log = logging.getLogger("commercekit.events")


class Outcome(enum.Enum):
    """What became of a message."""

    HANDLED = "handled"
    """The handler returned: commit it."""
    SKIPPED = "skipped"
    """A known type the subscription did not ask for: commit it."""
    DEAD = "dead"
    """Undecodable, or the handler kept failing: dead-letter it, then commit it."""
    ABORTED = "aborted"
    """The bus is stopping while the message waits for a retry: do not commit it."""
    DEFERRED = "deferred"
    """The handler is not ready for it yet (`NotReadyYet`): park it, deliver it again later."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of one message, and for a dead (or deferred) one, why."""

    outcome: Outcome
    attempts: int = 0
    reason: str = ""
    error: str = ""
    wait: float | None = None
    """For a deferred one: how long it may wait in all (`NotReadyYet.wait`)."""


def check_group(group: str) -> None:
    """Refuse an empty consumer group name."""
    if not group or len(group) > 200:
        raise ConfigurationError("a consumer group is a name of 1-200 characters")


async def wait_or_stop(stopping: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds`, or less if `stopping` is set; return whether it is set."""
    if seconds > 0 and not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), seconds)
    return stopping.is_set()


async def deliver(
    value: bytes | None,
    *,
    catalog: Catalog,
    handler: Handler,
    types: frozenset[str] | None,
    retry: EventRetry,
    stopping: asyncio.Event,
) -> Delivery:
    """Decode `value` and call `handler` until it succeeds or the retries run out."""
    if value is None:
        return Delivery(Outcome.DEAD, reason="empty message (no value)", error="MalformedEvent")
    try:
        event = catalog.decode(value)
    except MalformedEvent as exc:
        return Delivery(Outcome.DEAD, reason=exc.reason, error=type(exc).__name__)
    if types is not None and event.type not in types:
        return Delivery(Outcome.SKIPPED)
    return await _call(event, handler, retry, stopping)


async def _call(
    event: Envelope[Any], handler: Handler, retry: EventRetry, stopping: asyncio.Event
) -> Delivery:
    """Call `handler` until it succeeds, fails `retry.max_attempts` times, or the bus stops."""
    attempt = outage = 0
    while True:
        attempt += 1
        try:
            with _handler_span(event):
                await handler(event)
        except NotReadyYet as exc:
            reason = f"{type(exc).__name__}: {exc}"
            return Delivery(Outcome.DEFERRED, attempt, reason[:1000], type(exc).__name__, exc.wait)
        except Exception as exc:
            if retry.is_transient(exc):
                attempt -= 1  # not the event's fault: it does not count
                outage += 1
                log.warning(
                    "event %s (%s): a dependency is down (%s: %s); retrying until it is back",
                    event.id,
                    event.type,
                    type(exc).__name__,
                    exc,
                )
                if await wait_or_stop(stopping, retry.backoff(outage)):
                    return Delivery(Outcome.ABORTED, attempt + outage)
                continue
            reason = f"handler failed {attempt} time(s); last error: {type(exc).__name__}: {exc}"
            if attempt >= retry.max_attempts:
                log.warning("dead-lettering event %s (%s): %s", event.id, event.type, reason)
                return Delivery(Outcome.DEAD, attempt, reason[:1000], type(exc).__name__)
            log.info("event %s (%s): %s; retrying", event.id, event.type, reason)
            if await wait_or_stop(stopping, retry.backoff(attempt)):
                return Delivery(Outcome.ABORTED, attempt)
        else:
            return Delivery(Outcome.HANDLED, attempt + outage)


def _handler_span(event: Envelope[Any]) -> contextlib.AbstractContextManager[tracing.TraceContext]:
    """The consumer span one call of a handler runs in."""
    return tracing.start_span(
        f"{event.type} process",
        event.trace,
        kind="consumer",
        attributes={
            "messaging.operation.type": "process",
            "cloudevents.event_id": event.id,
            "cloudevents.event_source": event.source,
            "cloudevents.event_type": event.type,
        },
    )
