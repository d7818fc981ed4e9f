"""The FastAPI app every service starts from: errors, request ids, probes, metrics, docs."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp

from commercekit import __version__
from reference_app.common.errors import install_error_handlers
from reference_app.common.lean import LeanRoute, LeanRoutes
from reference_app.common.middleware import RequestMiddleware, request_histogram
from reference_app.common.probes import probes_router

__all__ = ["DOCS_ASSETS_URL", "Lifespan", "service_app"]

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]

DOCS_ASSETS_URL = "/docs-assets"
"""Where each app serves the Swagger UI and ReDoc scripts, styles and icon of its docs pages."""


_OWN_TELEMETRY_OFF: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters
    else {}
)
"""FastAPI's own OpenTelemetry (recent releases have it) is off: the request middleware
opens the request's server span and keeps its metrics; FastAPI's would be a second span."""


def service_app(
    name: str, *, lifespan: Lifespan, description: str = "", lean: Sequence[LeanRoute] = ()
) -> FastAPI:
    """A FastAPI app with the shared error handlers, middleware and probe routes.

    It never redirects (``redirect_slashes=False``): ``/api/v1/products/`` is a
    404, so no answer points at a host taken from the request.

    The `lifespan` wires the service's adapters and sets ``app.state.readiness``
    (name -> async check) for ``/ready``. Each app has its own metrics
    registry, so several apps can live in one process (tests).

    The docs pages, Swagger UI at ``/docs`` and ReDoc at ``/redoc``, load
    their scripts from the app itself (under `DOCS_ASSETS_URL`, the files
    fastapi-offline ships), not from a CDN: they work with no internet.

    The request middleware (request id, trace, access line, histogram) is
    the outermost layer, so every answer carries the request id, a 500 of
    an unexpected error too. The `lean` routes are answered right inside it,
    without FastAPI's per-request machinery (`reference_app.common.lean`):
    Starlette's own middleware (its error and body-limit layers) is not run
    for them, the lean routes answering their errors with the app's handlers.
    """
    app = FastAPIOffline(
        static_url=DOCS_ASSETS_URL,
        title=f"commercekit reference app: {name} service",
        description=description,
        version=__version__,
        lifespan=lifespan,
        # A path with a trailing slash is a 404, not a redirect: behind a proxy
        # the redirect would name the Host the client sent (an open redirect).
        redirect_slashes=False,
        **_OWN_TELEMETRY_OFF,
    )
    app.state.service = name
    app.state.readiness = {}
    registry = CollectorRegistry()
    app.state.metrics_registry = registry
    install_error_handlers(app)
    histogram = request_histogram(registry)
    build = app.build_middleware_stack

    def stack() -> ASGIApp:
        inner = build()
        return RequestMiddleware(LeanRoutes(inner, lean) if lean else inner, histogram=histogram)

    # Starlette builds the stack on the first call: ours wraps what it builds.
    app.build_middleware_stack = stack  # type: ignore[method-assign]
    app.include_router(probes_router(registry))
    return app
