"""The request middleware: each request is a span of the caller's trace, in logs and events."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from reference_app.common.logs import JsonFormatter
from reference_app.common.middleware import RequestMiddleware, request_histogram

from commercekit import tracing
from commercekit.events import Envelope, InMemoryEventBus, UserCreated
from commercekit.tracing import TraceContext

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT = f"00-{TRACE}-00f067aa0ba902b7-01"

log = logging.getLogger("tests.request_tracing")


@pytest.fixture
def bus() -> InMemoryEventBus:
    return InMemoryEventBus()


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """What the services' JSON formatter writes while a test runs."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter("tests"))
    for name in ("tests.request_tracing", "reference_app.access"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield out
    for name in ("tests.request_tracing", "reference_app.access"):
        logging.getLogger(name).removeHandler(handler)


@pytest.fixture
async def client(bus: InMemoryEventBus) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.add_middleware(RequestMiddleware, histogram=request_histogram(CollectorRegistry()))

    @app.post("/signup")
    async def signup() -> dict[str, Any]:
        log.info("signed up")
        payload = UserCreated(user_id="u1", username="ada", email="ada@example.com")
        await bus.publish(Envelope.wrap(payload, source="users"))
        span = tracing.current()
        return {"span": None if span is None else span.traceparent}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as http:
        yield http


def _logged(lines: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines.getvalue().splitlines()]


async def test_a_request_continues_the_callers_trace_in_its_answer_logs_and_events(
    client: httpx.AsyncClient, bus: InMemoryEventBus, lines: io.StringIO
) -> None:
    answer = await client.post("/signup", headers={"traceparent": CLIENT, "tracestate": "k=v"})
    assert answer.status_code == 200
    span = TraceContext.parse(answer.headers["traceparent"])
    assert span.trace_id == TRACE
    assert span.span_id != "00f067aa0ba902b7"  # the service's own span
    assert answer.json()["span"] == span.traceparent
    (record,) = bus.records(bus.topics.for_type("user.created"))
    event = json.loads(record.value or b"")
    assert event["traceparent"] == span.traceparent
    assert event["tracestate"] == "k=v"
    logged = _logged(lines)
    assert [entry["message"] for entry in logged] == ["signed up", "POST /signup 200"]
    assert {entry["trace_id"] for entry in logged} == {TRACE}
    assert tracing.current() is None


@pytest.mark.parametrize(
    "headers", [{}, {"traceparent": "garbage"}, {"traceparent": CLIENT.replace("-01", "-1")}]
)
async def test_a_request_without_a_valid_traceparent_starts_a_trace(
    client: httpx.AsyncClient, lines: io.StringIO, headers: dict[str, str]
) -> None:
    first = await client.post("/signup", headers=headers)
    second = await client.post("/signup", headers=headers)
    ids = [TraceContext.parse(a.headers["traceparent"]).trace_id for a in (first, second)]
    assert ids[0] != ids[1]
    assert TRACE not in ids
    assert [entry["trace_id"] for entry in _logged(lines)] == [ids[0], ids[0], ids[1], ids[1]]


def test_a_log_line_outside_any_request_has_a_null_trace_id(lines: io.StringIO) -> None:
    log.info("starting")
    (entry,) = _logged(lines)
    assert entry["trace_id"] is None


async def test_with_an_otel_provider_a_request_is_one_server_span_the_middlewares(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # FastAPI's own telemetry would open a second server span (and metrics
    # the service already has) on every request: service_app turns it off.
    from opentelemetry import trace  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: PLC0415
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: PLC0415
        InMemorySpanExporter,
    )
    from opentelemetry.trace import SpanKind  # noqa: PLC0415
    from reference_app.common import service_app  # noqa: PLC0415

    found = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(found))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield

    app = service_app("test", lifespan=lifespan)

    @app.get("/thing")
    async def thing() -> dict[str, str]:
        return {}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as http:
        answer = await http.get("/thing", headers={"traceparent": CLIENT})
    assert answer.status_code == 200
    servers = [s for s in found.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert [s.name for s in servers] == ["HTTP GET"]
    provider.shutdown()
