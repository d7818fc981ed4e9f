"""The request middleware: request id, trace context, access log line, latency histogram."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from commercekit import tracing
from commercekit.tracing import TraceContext
from reference_app.common.logs import request_id_var

__all__ = ["REQUEST_ID_HEADER", "TRACEPARENT_HEADER", "RequestMiddleware", "request_histogram"]

REQUEST_ID_HEADER = "X-Request-Id"
"""Set by nginx (``$request_id`` unless the client sent a valid one); echoed back."""

TRACEPARENT_HEADER = "traceparent"
"""W3C Trace Context: the caller's span (nginx's, valid or new); answered with the service's."""

_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_HEADER_NAME = REQUEST_ID_HEADER.lower().encode()
_TRACEPARENT = TRACEPARENT_HEADER.encode()
_TRACESTATE = b"tracestate"
_UNMATCHED = "<unmatched>"

access_log = logging.getLogger("reference_app.access")


def request_histogram(registry: CollectorRegistry) -> Histogram:
    """The latency histogram by method, route template and status."""
    return Histogram(
        "http_request_duration_seconds",
        "HTTP request latency, by route template and status.",
        ["method", "route", "status"],
        registry=registry,
    )


class RequestMiddleware:
    """Gives each request an id (nginx's or a new one) and a span, logs it, and times it.

    The span continues the caller's ``traceparent`` (and ``tracestate``), or
    starts a trace if there is none valid; the events the request publishes
    carry it, every log line names its trace id, and the answer's
    ``traceparent`` header is the service's span.

    Args:
        app: the ASGI app to wrap.
        histogram: where latencies go, labelled by route template (not the
            raw path, so ids in paths do not explode the label set).
    """

    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram
        # (method, route, status) -> the histogram's child: labels() takes a lock each call.
        self._observers: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI call."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = ""
        traceparent = tracestate = None
        for name, value in scope["headers"]:
            if name == _HEADER_NAME:
                rid = value.decode("latin-1")
            elif name == _TRACEPARENT:
                traceparent = value.decode("latin-1")
            elif name == _TRACESTATE:
                tracestate = value.decode("latin-1")
        if not _VALID_ID.match(rid):
            rid = uuid.uuid4().hex
        with tracing.start_span(
            f"HTTP {scope['method']}",
            TraceContext.from_headers(traceparent, tracestate),
            kind="server",
            attributes={"http.request.method": scope["method"], "url.path": scope["path"]},
        ) as span:
            await self._serve(scope, receive, send, rid, span)

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, rid: str, span: TraceContext
    ) -> None:
        token = request_id_var.set(rid)
        started = time.perf_counter()
        status = 500
        echoed = (_HEADER_NAME, _TRACEPARENT)

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [h for h in message.get("headers", ()) if h[0].lower() not in echoed]
                headers.append((_HEADER_NAME, rid.encode("latin-1")))
                headers.append((_TRACEPARENT, span.traceparent.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            method = scope["method"]
            route = getattr(scope.get("route"), "path", _UNMATCHED)
            key = (method, route, status)
            observer = self._observers.get(key)
            if observer is None:
                observer = self._observers[key] = self.histogram.labels(method, route, str(status))
            observer.observe(elapsed)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "%s %s %s",
                    method,
                    scope["path"],
                    status,
                    extra={
                        "method": method,
                        "path": scope["path"],
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                    },
                )
            request_id_var.reset(token)
