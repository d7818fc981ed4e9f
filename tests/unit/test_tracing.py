"""W3C Trace Context helpers: parsing, formatting, spans, and the optional OpenTelemetry mapping."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from commercekit import tracing
from commercekit.tracing import TraceContext

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{SPAN}-01"


def test_a_valid_traceparent_reads_back_as_it_was_written() -> None:
    assert tracing.parse_traceparent(VALID) == (TRACE, SPAN, 1)
    assert tracing.format_traceparent(TRACE, SPAN, 1) == VALID
    assert tracing.format_traceparent(TRACE, SPAN, 0) == f"00-{TRACE}-{SPAN}-00"
    context = TraceContext.parse(VALID)
    assert context.traceparent == VALID
    assert context.sampled
    assert not TraceContext.parse(f"00-{TRACE}-{SPAN}-00").sampled


@pytest.mark.parametrize(
    "value",
    [
        "",
        f"01-{TRACE}-{SPAN}-01",  # only version 00
        f"ff-{TRACE}-{SPAN}-01",
        f"00-{TRACE.upper()}-{SPAN}-01",  # lower-case hex only
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"00-{TRACE[:-1]}-{SPAN}-01",
        f"00-{TRACE}-{SPAN}0-01",
        f"00-{TRACE}-{SPAN}-1",
        f"00-{TRACE}-{SPAN}-01-",
        f"00-{TRACE}-{SPAN}-01\n",
        f"00_{TRACE}_{SPAN}_01",
        f"00-{TRACE[:-1]}g-{SPAN}-01",
    ],
)
def test_an_invalid_traceparent_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="traceparent"):
        tracing.parse_traceparent(value)
    assert TraceContext.from_headers(value) is None


@pytest.mark.parametrize(
    ("trace_id", "span_id", "flags"),
    [(TRACE, SPAN, 256), (TRACE, SPAN, -1), ("0" * 32, SPAN, 1), (TRACE, "xyz", 1)],
)
def test_a_trace_context_refuses_what_no_traceparent_can_say(
    trace_id: str, span_id: str, flags: int
) -> None:
    with pytest.raises(ValueError, match="trace"):
        TraceContext(trace_id, span_id, flags)


@pytest.mark.parametrize(
    "value",
    ["congo=t61rcWkgMzE", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", "a@b=1, c=2", "x/y*z_-=v v"],
)
def test_a_valid_tracestate_is_kept(value: str) -> None:
    assert tracing.valid_tracestate(value)
    assert TraceContext.parse(VALID, value).tracestate == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Upper=1",  # keys are lower-case
        "k=a,b",  # "b" is no key=value member
        "k=v=w",
        "k=\x01",
        "k= ",  # an empty value
        "k=" + "v" * 600,  # longer than 512
        ",".join(f"k{i}=v" for i in range(33)),  # more than 32 members
    ],
)
def test_an_invalid_tracestate_is_dropped_and_the_traceparent_kept(value: str) -> None:
    assert not tracing.valid_tracestate(value)
    context = TraceContext.parse(VALID, value)
    assert context.traceparent == VALID
    assert context.tracestate is None
    with pytest.raises(ValueError, match="tracestate"):
        TraceContext(TRACE, SPAN, 1, value)


def test_headers_carry_the_tracestate_only_when_there_is_one() -> None:
    assert TraceContext.parse(VALID).headers() == {"traceparent": VALID}
    assert TraceContext.parse(VALID, "k=v").headers() == {"traceparent": VALID, "tracestate": "k=v"}


def test_new_ids_are_random_hex_of_the_right_length() -> None:
    traces = {tracing.new_trace_id() for _ in range(50)}
    spans = {tracing.new_span_id() for _ in range(50)}
    assert len(traces) == 50
    assert len(spans) == 50
    for trace_id in traces:
        tracing.format_traceparent(trace_id, SPAN)  # valid: 32 lower-case hex, not zero
    for span_id in spans:
        tracing.format_traceparent(TRACE, span_id)


def test_a_child_is_a_new_span_of_the_same_trace() -> None:
    parent = TraceContext.parse(f"00-{TRACE}-{SPAN}-00", "k=v")
    child = parent.child()
    assert child.trace_id == TRACE
    assert child.span_id != SPAN
    assert (child.flags, child.tracestate) == (0, "k=v")


def test_start_span_continues_the_parent_or_starts_a_trace_and_restores_the_context() -> None:
    assert tracing.current() is None
    parent = TraceContext.parse(VALID)
    with tracing.start_span("outer", parent) as outer:
        assert outer.trace_id == TRACE
        assert outer.span_id != SPAN
        assert tracing.current() == outer
        with tracing.start_span("root", None) as root:
            assert root.trace_id != TRACE
            assert tracing.current() == root
        assert tracing.current() == outer
    assert tracing.current() is None


def test_use_carries_a_context_without_a_span_of_its_own() -> None:
    context = TraceContext.parse(VALID)
    with tracing.use(context):
        assert tracing.current() is context
        with tracing.use(None):
            assert tracing.current() is None
        assert tracing.current() is context
    assert tracing.current() is None


async def test_the_context_follows_awaits_and_tasks_and_stays_in_its_task() -> None:
    seen: list[TraceContext | None] = []

    async def work() -> None:
        await asyncio.sleep(0)
        seen.append(tracing.current())

    async def other() -> None:
        await asyncio.sleep(0.01)
        seen.append(tracing.current())

    elsewhere = asyncio.create_task(other())  # created outside the span
    with tracing.start_span("request", TraceContext.parse(VALID)) as span:
        await asyncio.create_task(work())
        await elsewhere
    assert seen == [span, None]


def test_without_a_tracer_provider_opentelemetry_is_left_alone() -> None:
    assert not tracing.otel_enabled()
    with tracing.start_span("plain", TraceContext.parse(VALID)) as span:
        from opentelemetry import trace  # noqa: PLC0415

        assert not trace.get_current_span().get_span_context().is_valid
        assert tracing.current() == span


# ---------------------------------------------------------------- OpenTelemetry configured


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A real SDK tracer provider as the global one (for this test only), and its spans."""
    from opentelemetry import trace  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: PLC0415
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: PLC0415

    found = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(found))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    yield found
    provider.shutdown()


def test_with_a_tracer_provider_start_span_opens_a_real_span_under_the_parent(
    exporter: Any,
) -> None:
    from opentelemetry.trace import SpanKind  # noqa: PLC0415

    assert tracing.otel_enabled()
    parent = TraceContext.parse(VALID, "k=v")
    with tracing.start_span(
        "payment.confirmed process", parent, kind="consumer", attributes={"a": "b"}
    ) as span:
        assert tracing.current() == span
    assert tracing.current() is None
    (finished,) = exporter.get_finished_spans()
    assert finished.name == "payment.confirmed process"
    assert finished.kind is SpanKind.CONSUMER
    assert dict(finished.attributes) == {"a": "b"}
    assert format(finished.context.trace_id, "032x") == TRACE == span.trace_id
    assert format(finished.context.span_id, "016x") == span.span_id
    assert finished.parent is not None
    assert format(finished.parent.span_id, "016x") == SPAN
    assert span.tracestate == "k=v"


def test_with_a_tracer_provider_current_is_the_applications_own_span(exporter: Any) -> None:
    from opentelemetry import trace  # noqa: PLC0415

    tracer = trace.get_tracer("shop")
    with tracer.start_as_current_span("checkout") as own:
        found = tracing.current()
        assert found is not None
        assert found.trace_id == format(own.get_span_context().trace_id, "032x")
        assert found.span_id == format(own.get_span_context().span_id, "016x")
        with tracing.start_span("inner", found) as inner:
            assert inner.trace_id == found.trace_id
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert spans["inner"].parent.span_id == own.get_span_context().span_id


def test_with_a_tracer_provider_an_exception_is_recorded_on_the_span(exporter: Any) -> None:
    from opentelemetry.trace import StatusCode  # noqa: PLC0415

    with pytest.raises(RuntimeError), tracing.start_span("fails", None):
        raise RuntimeError("boom")
    (finished,) = exporter.get_finished_spans()
    assert finished.status.status_code is StatusCode.ERROR
    assert finished.parent is None  # no parent: a new trace, not the ambient span
