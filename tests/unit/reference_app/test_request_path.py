"""What every request costs the services: no thread-pool hop, the fast HTTP server."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from collections.abc import Iterator

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry
from reference_app.common.probes import probes_router
from reference_app.inventory.routes import router as inventory_router
from reference_app.launch import uvicorn_args
from reference_app.payment.routes import router as payment_router
from reference_app.user.routes import router as user_router


def _calls(dependant: Dependant) -> Iterator[object]:
    if dependant.call is not None:
        yield dependant.call
    for sub in dependant.dependencies:
        yield from _calls(sub)


def test_no_route_or_dependency_runs_in_the_thread_pool() -> None:
    # A plain `def` endpoint or dependency costs two thread switches per
    # request; every service's routes are async, and so is all they depend on.
    routers = (user_router, inventory_router, payment_router, probes_router(CollectorRegistry()))
    routes = [r for router in routers for r in router.routes if isinstance(r, APIRoute)]
    assert len(routes) > 15
    sync = sorted(
        f"{route.path} {getattr(call, '__qualname__', call)}"
        for route in routes
        for call in _calls(route.dependant)
        if not (inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call))
    )
    assert sync == []


def test_services_run_on_uvloop_and_httptools() -> None:
    args = uvicorn_args("reference_app.user.main:app_from_env", "127.0.0.1", 8001)
    assert args[args.index("--loop") + 1] == "uvloop"
    assert args[args.index("--http") + 1] == "httptools"


def test_the_collector_is_tuned_in_a_service_process() -> None:
    # In a process of its own: freezing this test process would keep its garbage.
    code = (
        "import gc; from reference_app.common.runtime import GC_THRESHOLDS, tune_gc; "
        "tune_gc(); assert gc.get_threshold() == GC_THRESHOLDS, gc.get_threshold(); "
        "assert gc.get_freeze_count() > 10_000, gc.get_freeze_count(); print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.stdout.strip() == "ok", done.stderr


@pytest.mark.parametrize("service", ["user", "inventory", "payment", "email", "worker", "demo"])
def test_every_entry_point_tunes_the_collector_once_the_app_is_made(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = importlib.import_module(f"reference_app.{service}.main")
    calls: list[str] = []
    monkeypatch.setenv("ENVIRONMENT", "development")
    monkeypatch.setattr(module, "configure_logging", lambda *args: calls.append("logging"))
    monkeypatch.setattr(module, "create_app", lambda *args, **kwargs: calls.append("app"))
    monkeypatch.setattr(module, "tune_gc", lambda: calls.append("gc"))
    module.app_from_env()
    assert calls == ["logging", "app", "gc"]
