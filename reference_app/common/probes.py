"""``/health`` (the process is alive), ``/ready`` (its dependencies answer), ``/metrics``.

Each scrape of ``/metrics`` runs the readiness checks too, and reports them as
``refapp_dependency_up{dependency}`` (1 if it answered, 0 if not).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

__all__ = ["ReadinessCheck", "probes_router"]

ReadinessCheck = Callable[[], Awaitable[object]]
"""An async check of one dependency: returns if it answers, raises if not."""

log = logging.getLogger("reference_app.probes")

CHECK_TIMEOUT = 2.0


async def _run(name: str, check: ReadinessCheck) -> tuple[str, str]:
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT)
    except Exception as exc:  # any failure means "not ready"
        log.warning("readiness check %s failed: %r", name, exc)
        return name, "down"
    return name, "ok"


async def _run_all(request: Request) -> dict[str, str]:
    checks: Mapping[str, ReadinessCheck] = getattr(request.app.state, "readiness", {})
    return dict(await asyncio.gather(*(_run(n, c) for n, c in checks.items())))


def probes_router(registry: CollectorRegistry) -> APIRouter:
    """The probe routes; ``/ready`` and ``/metrics`` run the checks in ``app.state.readiness``."""
    router = APIRouter(include_in_schema=False)
    up = Gauge(
        "refapp_dependency_up",
        "Whether the dependency answered its readiness check at this scrape (1) or not (0).",
        ["dependency"],
        registry=registry,
    )

    @router.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/ready")
    async def ready(request: Request) -> JSONResponse:
        results = await _run_all(request)
        down = sorted(name for name, state in results.items() if state != "ok")
        if down:
            body = {
                "status": "unavailable",
                "checks": results,
                "error": {"code": "not_ready", "message": f"down: {', '.join(down)}"},
            }
            return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "ready", "checks": results})

    @router.get("/metrics")
    async def metrics(request: Request) -> Response:
        for name, state in (await _run_all(request)).items():
            up.labels(name).set(state == "ok")
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
