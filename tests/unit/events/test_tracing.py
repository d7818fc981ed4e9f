"""The trace context in the envelope, through the in-memory bus and into the handlers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic import ValidationError

from commercekit import tracing
from commercekit.events import (
    CATALOG,
    Envelope,
    EventLine,
    InMemoryEventBus,
    ObservedEventBus,
    PaymentConfirmed,
    ReservationConfirmed,
    UserCreated,
)
from commercekit.plugins import PluginManager, hookimpl
from commercekit.tracing import TraceContext

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE}-00f067aa0ba902b7-01"


def user(n: int = 1) -> Envelope[UserCreated]:
    payload = UserCreated(user_id=f"u{n}", username=f"n{n}", email=f"u{n}@example.com")
    return Envelope.wrap(payload, source="tests")


def paid(reservation_id: str = "r1") -> Envelope[PaymentConfirmed]:
    payload = PaymentConfirmed(
        payment_id=f"p-{reservation_id}",
        reservation_id=reservation_id,
        user_id="u1",
        amount="12.50",
        currency="EUR",
    )
    return Envelope.wrap(payload, source="payments")


def test_the_envelope_carries_traceparent_and_tracestate_on_the_wire() -> None:
    event = Envelope.wrap(user().data, source="tests", trace=TraceContext.parse(TRACEPARENT, "k=v"))
    wire = json.loads(event.to_json())
    assert (wire["traceparent"], wire["tracestate"]) == (TRACEPARENT, "k=v")
    decoded = CATALOG.decode(event.to_json())
    assert decoded.traceparent == TRACEPARENT
    assert decoded.trace == TraceContext.parse(TRACEPARENT, "k=v")
    assert ("traceparent", TRACEPARENT.encode()) in decoded.headers()
    assert ("tracestate", b"k=v") in decoded.headers()


def test_an_untraced_event_reads_as_before_on_the_wire() -> None:
    event = user()
    wire = json.loads(event.to_json())
    assert "traceparent" not in wire
    assert "tracestate" not in wire
    assert event.trace is None
    assert [name for name, _ in event.headers()] == ["content-type"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("traceparent", f"01-{TRACE}-00f067aa0ba902b7-01"),
        ("traceparent", f"00-{'0' * 32}-00f067aa0ba902b7-01"),
        ("traceparent", f"00-{TRACE}-{'0' * 16}-01"),
        ("traceparent", f"00-{TRACE.upper()}-00f067aa0ba902b7-01"),
        ("traceparent", TRACEPARENT + "\n"),
        ("tracestate", "Not A List"),
        ("tracestate", ""),
    ],
)
def test_a_decoder_refuses_a_malformed_trace_attribute(field: str, value: str) -> None:
    wire = json.loads(user().to_json())
    wire[field] = value
    if field == "tracestate":
        wire["traceparent"] = TRACEPARENT
    with pytest.raises(Exception, match=field):
        CATALOG.decode(json.dumps(wire).encode())
    with pytest.raises(ValidationError):
        Envelope[UserCreated].model_validate(wire)


def test_in_trace_stamps_the_current_context_unless_the_event_has_one() -> None:
    event = user()
    assert event.in_trace() is event  # no context: as it is
    with tracing.start_span("request", TraceContext.parse(TRACEPARENT)) as span:
        stamped = event.in_trace()
        assert stamped.traceparent == span.traceparent
        assert stamped.id == event.id
        assert stamped.in_trace(TraceContext.new()) is stamped  # keeps its own


def test_follow_keeps_the_trace_of_the_event_it_follows() -> None:
    event = paid().in_trace(TraceContext.parse(TRACEPARENT))
    confirmed = ReservationConfirmed(
        reservation_id="r1", owner="u1", lines=(EventLine(sku="A", quantity=1),)
    )
    follower = event.follow(confirmed, source="inventory")
    assert follower.trace is not None
    assert follower.trace.trace_id == TRACE
    assert follower.correlation_id == event.id


async def test_an_event_a_handler_publishes_carries_the_trace_id_of_the_event_it_handled() -> None:
    bus = InMemoryEventBus()
    spans: list[TraceContext | None] = []

    async def settle(event: Envelope[Any]) -> None:
        spans.append(tracing.current())
        lines = (EventLine(sku="A", quantity=1),)
        payload = ReservationConfirmed(
            reservation_id=event.data.reservation_id, owner="u1", lines=lines
        )
        await bus.publish(Envelope.wrap(payload, source="inventory"))  # no trace given

    received: list[Envelope[Any]] = []

    async def record(event: Envelope[Any]) -> None:
        received.append(event)

    bus.subscribe("inventory", settle, types=["payment.confirmed"])
    bus.subscribe("audit", record, types=["reservation.confirmed"])
    async with bus:
        with tracing.start_span("POST /api/v1/payment", TraceContext.parse(TRACEPARENT)) as request:
            await bus.publish(paid())
        await asyncio.wait_for(bus.drain(), 5)

    (published,) = bus.records(bus.topics.for_type("payment.confirmed"))
    assert json.loads(published.value or b"")["traceparent"] == request.traceparent
    assert ("traceparent", request.traceparent.encode()) in published.headers
    (handler_span,) = spans
    assert handler_span is not None
    assert handler_span.trace_id == TRACE
    assert handler_span.span_id != request.span_id  # the handler's own span
    (confirmed,) = received
    assert confirmed.trace is not None
    assert confirmed.trace.trace_id == TRACE
    assert confirmed.trace.span_id == handler_span.span_id  # published by the handler's span
    assert tracing.current() is None


async def test_a_handler_of_an_untraced_event_starts_a_trace_of_its_own() -> None:
    bus = InMemoryEventBus()
    spans: list[TraceContext | None] = []

    async def handle(event: Envelope[Any]) -> None:
        spans.append(tracing.current())

    bus.subscribe("email", handle, types=["user.created"])
    async with bus:
        with tracing.start_span("unrelated", None):
            # The consumer tasks start inside this span; the handlers must not inherit it.
            await bus.start()
        await bus.publish_many([user(1), user(2)])
        await asyncio.wait_for(bus.drain(), 5)
    assert len(spans) == 2
    first, second = spans
    assert first is not None
    assert second is not None
    assert first.trace_id != second.trace_id


async def test_a_retried_handler_runs_each_attempt_in_a_span_of_the_same_trace() -> None:
    bus = InMemoryEventBus()
    spans: list[TraceContext] = []

    async def flaky(event: Envelope[Any]) -> None:
        found = tracing.current()
        assert found is not None
        spans.append(found)
        if len(spans) < 3:
            raise RuntimeError("not yet")

    bus.subscribe("g", flaky, types=["user.created"])
    async with bus:
        await bus.publish(user().in_trace(TraceContext.parse(TRACEPARENT)))
        await asyncio.wait_for(bus.drain(), 5)
    assert [s.trace_id for s in spans] == [TRACE] * 3
    assert len({s.span_id for s in spans}) == 3


async def test_the_observed_bus_reports_events_with_the_trace_they_were_published_in() -> None:
    seen: list[str | None] = []

    class Watcher:
        @hookimpl
        def commercekit_event_published(self, event: Envelope[Any]) -> None:
            seen.append(event.traceparent)

    plugins = PluginManager()
    plugins.register(Watcher())
    bus = ObservedEventBus(InMemoryEventBus(), plugins)
    async with bus:
        with tracing.start_span("request", TraceContext.parse(TRACEPARENT)) as span:
            await bus.publish(user())
    assert seen == [span.traceparent]
