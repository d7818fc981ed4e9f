"""W3C Trace Context across HTTP and Kafka: one trace id from the gateway to the last consumer.

```python
from commercekit import tracing

parent = tracing.TraceContext.from_headers(request.headers.get("traceparent"))
with tracing.start_span("POST /api/v1/payment", parent, kind="server") as span:
    span.trace_id  # the client's trace id (a new one if it sent none)
    await outbox.add(session, event)  # the event carries span.traceparent
```

The current trace context lives in a `contextvars.ContextVar`, so it
follows a request or a handler through its ``await``s and into the tasks
it creates. The buses and the outbox stamp it on every event they publish
(the CloudEvents distributed-tracing attributes ``traceparent`` and
``tracestate``), and every bus runs a handler inside a child span of the
event it consumes: an event the handler publishes carries the same trace id.

OpenTelemetry is optional (``pip install "commercekit[otel]"``). Once a
tracer provider is configured (``trace.set_tracer_provider(...)``),
`start_span` opens real OpenTelemetry spans, parented through
its W3C propagator, and `current` reads OpenTelemetry's current
span, so the spans of your own instrumentation and the events' trace
context agree. Without it (or with the API alone and no provider), the
context variable works on its own and no span is reported anywhere.
"""

from __future__ import annotations

import contextvars
import random
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = [
    "TRACEPARENT_PATTERN",
    "TRACESTATE_MAX_LENGTH",
    "SpanKind",
    "TraceContext",
    "current",
    "format_traceparent",
    "new_span_id",
    "new_trace_id",
    "otel_enabled",
    "parse_traceparent",
    "start_span",
    "use",
    "valid_tracestate",
]

TRACEPARENT_PATTERN = r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
"""The syntax of a version-00 ``traceparent`` (the all-zero ids are refused besides)."""

TRACESTATE_MAX_LENGTH = 512
"""The longest ``tracestate`` kept (W3C: at least 512 characters must be propagated)."""

SpanKind = Literal["internal", "server", "client", "producer", "consumer"]
"""What a span does (OpenTelemetry's span kinds)."""

_TRACEPARENT = re.compile(TRACEPARENT_PATTERN)
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_SAMPLED = 0x01
# A list-member: key=value; keys are lower-case (a multi-tenant key has one @),
# values printable ASCII without "," and "=", not ending in a space.
_MEMBER = re.compile(
    r"^(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})"
    r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$"
)
_MAX_MEMBERS = 32

_current: contextvars.ContextVar[TraceContext | None] = contextvars.ContextVar(
    "commercekit_trace", default=None
)


def new_trace_id() -> str:
    """A random trace id: 32 lower-case hex digits, never all zeros.

    From `random`, as OpenTelemetry's own id generator: an id must be
    unique, not secret, and the system's generator costs a system call per id.
    """
    while True:
        value = random.getrandbits(128)
        if value:
            return f"{value:032x}"


def new_span_id() -> str:
    """A random span (parent) id: 16 lower-case hex digits, never all zeros."""
    while True:
        value = random.getrandbits(64)
        if value:
            return f"{value:016x}"


def format_traceparent(trace_id: str, span_id: str, flags: int = _SAMPLED) -> str:
    """The version-00 ``traceparent`` header value of a span.

    Raises:
        ValueError: an id is not lower-case hex of the right length, or all zeros,
            or `flags` is not a byte.
    """
    if not 0 <= flags <= 0xFF:
        raise ValueError(f"trace flags are one byte, not {flags!r}")
    value = f"00-{trace_id}-{span_id}-{flags:02x}"
    parse_traceparent(value)
    return value


def parse_traceparent(value: str) -> tuple[str, str, int]:
    """Read a ``traceparent``: its trace id, parent (span) id and flags.

    Only version ``00`` is accepted, exactly as W3C Trace Context writes it:
    lower-case hex, a trace id and a parent id that are not all zeros.

    Raises:
        ValueError: `value` is not a valid version-00 ``traceparent``.
    """
    if not _TRACEPARENT.fullmatch(value):
        raise ValueError(f"not a version-00 traceparent: {value[:80]!r}")
    _, trace_id, span_id, flags = value.split("-")
    if trace_id == _ZERO_TRACE:
        raise ValueError("the trace id of a traceparent is never all zeros")
    if span_id == _ZERO_SPAN:
        raise ValueError("the parent id of a traceparent is never all zeros")
    return trace_id, span_id, int(flags, 16)


def valid_tracestate(value: str) -> bool:
    """Whether `value` is a ``tracestate`` worth passing on (W3C list syntax, at most 512)."""
    if not value or len(value) > TRACESTATE_MAX_LENGTH:
        return False
    members = [m.strip(" \t") for m in value.split(",")]
    members = [m for m in members if m]
    return 0 < len(members) <= _MAX_MEMBERS and all(_MEMBER.fullmatch(m) for m in members)


@dataclass(frozen=True, slots=True)
class TraceContext:
    """Where in a trace the code runs: the trace, the current span, its flags and state.

    Attributes:
        trace_id: 32 lower-case hex digits, the same from the first request to the last event.
        span_id: 16 lower-case hex digits: the span that runs now (the parent of what it calls).
        flags: the W3C trace flags; bit 0 is "sampled".
        tracestate: the vendors' ``tracestate`` list, passed on untouched; None if absent.
    """

    trace_id: str
    span_id: str
    flags: int = _SAMPLED
    tracestate: str | None = None

    def __post_init__(self) -> None:
        format_traceparent(self.trace_id, self.span_id, self.flags)  # validates
        if self.tracestate is not None and not valid_tracestate(self.tracestate):
            raise ValueError(f"not a valid tracestate: {self.tracestate[:80]!r}")

    @classmethod
    def _checked(
        cls, trace_id: str, span_id: str, flags: int, tracestate: str | None
    ) -> TraceContext:
        """A context of values already checked (parsed, or made here): not checked again."""
        context = object.__new__(cls)
        object.__setattr__(context, "trace_id", trace_id)
        object.__setattr__(context, "span_id", span_id)
        object.__setattr__(context, "flags", flags)
        object.__setattr__(context, "tracestate", tracestate)
        return context

    @classmethod
    def new(cls, *, sampled: bool = True) -> TraceContext:
        """The root span of a new trace."""
        return cls._checked(new_trace_id(), new_span_id(), _SAMPLED if sampled else 0, None)

    @classmethod
    def parse(cls, traceparent: str, tracestate: str | None = None) -> TraceContext:
        """The context a ``traceparent`` (and ``tracestate``) describe.

        An invalid `tracestate` is dropped (W3C: the ``traceparent`` alone still counts).

        Raises:
            ValueError: `traceparent` is not a valid version-00 ``traceparent``.
        """
        trace_id, span_id, flags = parse_traceparent(traceparent)
        state = tracestate.strip(" \t") if tracestate else None
        kept = state if state and valid_tracestate(state) else None
        return cls._checked(trace_id, span_id, flags, kept)

    @classmethod
    def from_headers(
        cls, traceparent: str | None, tracestate: str | None = None
    ) -> TraceContext | None:
        """Like `parse`, but None for a missing or invalid ``traceparent`` (start a new trace)."""
        if not traceparent:
            return None
        try:
            return cls.parse(traceparent.strip(" \t"), tracestate)
        except ValueError:
            return None

    @property
    def traceparent(self) -> str:
        """This span as a ``traceparent`` header value."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags:02x}"

    @property
    def sampled(self) -> bool:
        """Whether the trace's origin asked for it to be recorded."""
        return bool(self.flags & _SAMPLED)

    def child(self) -> TraceContext:
        """A new span in this trace, whose parent is this one (same flags and state)."""
        return self._checked(self.trace_id, new_span_id(), self.flags, self.tracestate)

    def headers(self) -> dict[str, str]:
        """``traceparent`` (and ``tracestate``, if any) as HTTP or Kafka headers carry them."""
        found = {"traceparent": self.traceparent}
        if self.tracestate:
            found["tracestate"] = self.tracestate
        return found


def current() -> TraceContext | None:
    """The trace context the code runs in, if any.

    With OpenTelemetry configured, its current span (yours, or one `start_span`
    opened); otherwise the one `start_span` or `use` set.
    """
    if otel_enabled():
        found = _from_otel_span(_otel_current_span())
        if found is not None:
            return found
    return _current.get()


@contextmanager
def use(context: TraceContext | None) -> Iterator[TraceContext | None]:
    """Run the block in `context` (None: outside any trace), then restore the previous one.

    It opens no span: use it to carry a context you already have (a relay, a
    test). To continue a caller's trace with a span of your own, use `start_span`.
    """
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


@contextmanager
def start_span(
    name: str,
    parent: TraceContext | None,
    *,
    kind: SpanKind = "internal",
    attributes: Mapping[str, str | int | bool] | None = None,
) -> Iterator[TraceContext]:
    """Run the block in a new span: a child of `parent`, or the root of a new trace.

    With OpenTelemetry configured, the span is a real one (`name`, `kind`,
    `attributes`; an exception escaping the block is recorded on it), whose
    parent is extracted from `parent` by OpenTelemetry's W3C propagator.

    Args:
        name: what the span does (``"payment.confirmed process"``, ``"POST /api/v1/payment"``).
        parent: the caller's span (from a ``traceparent`` header or an event);
            None starts a new trace.
        kind: what the span does, for OpenTelemetry.
        attributes: facts about it, for OpenTelemetry.

    Yields:
        The span's context (also `current` inside the block).
    """
    if otel_enabled():
        with _otel_span(name, parent, kind, attributes) as span:
            yield span
        return
    span = parent.child() if parent is not None else TraceContext.new()
    token = _current.set(span)
    try:
        yield span
    finally:
        _current.reset(token)


# ---------------------------------------------------------------- OpenTelemetry


def otel_enabled() -> bool:
    """Whether OpenTelemetry is installed and a tracer provider is configured."""
    trace = _otel_trace()
    if trace is None:
        return False
    provider = trace.get_tracer_provider()
    return not isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


@cache
def _otel_trace() -> ModuleType | None:
    """``opentelemetry.trace``, or None without the API (looked for once)."""
    try:
        from opentelemetry import trace  # noqa: PLC0415 - optional: commercekit[otel]
    except ImportError:
        return None
    return trace


def _otel_current_span() -> Span:
    from opentelemetry import trace  # noqa: PLC0415 - optional: commercekit[otel]

    return trace.get_current_span()


def _from_otel_span(span: Span) -> TraceContext | None:
    found = span.get_span_context()
    if not found.is_valid:
        return None
    state = found.trace_state.to_header() or None
    return TraceContext(
        format(found.trace_id, "032x"),
        format(found.span_id, "016x"),
        int(found.trace_flags),
        state if state and valid_tracestate(state) else None,
    )


@contextmanager
def _otel_span(
    name: str,
    parent: TraceContext | None,
    kind: SpanKind,
    attributes: Mapping[str, str | int | bool] | None,
) -> Iterator[TraceContext]:
    # Optional (commercekit[otel]), and only reached once a tracer provider is set.
    from opentelemetry import trace  # noqa: PLC0415
    from opentelemetry.context import Context  # noqa: PLC0415
    from opentelemetry.trace.propagation.tracecontext import (  # noqa: PLC0415
        TraceContextTextMapPropagator,
    )

    # The parent is `parent` alone, or none: never the ambient span (a consumer's
    # task may have inherited one that has nothing to do with the event). The
    # carrier is W3C whatever propagators the application set up for its HTTP.
    carrier = parent.headers() if parent is not None else {}
    parent_context = TraceContextTextMapPropagator().extract(carrier, context=Context())
    tracer = trace.get_tracer("commercekit")
    with tracer.start_as_current_span(
        name,
        context=parent_context,
        kind=trace.SpanKind[kind.upper()],
        attributes=dict(attributes or {}),
    ) as span:
        found = _from_otel_span(span)
        if found is None:  # pragma: no cover - a provider that makes invalid spans
            found = parent.child() if parent is not None else TraceContext.new()
        token = _current.set(found)
        try:
            yield found
        finally:
            _current.reset(token)
