"""The demo's app: every service wired on one embedded `Infra`, behind the in-process gateway.

```console
$ commercekit demo                      # this app on http://127.0.0.1:8000, and a guided walk
$ uvicorn --factory reference_app.demo.main:app_from_env --port 8000   # the app alone
```

The lifespan opens `reference_app.common.infra.embedded` (SQLite, fakeredis
running the same Lua, the in-memory bus) and enters the ``wire`` of the user,
inventory, payment, email and worker services on it, with one `DemoSettings`.
The routers are the services' own; only the backends differ from the full
stack.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from pydantic import SecretStr
from starlette.middleware import Middleware

from reference_app.common import configure_logging, service_app
from reference_app.common.infra import embedded
from reference_app.common.runtime import tune_gc
from reference_app.demo.gateway import InProcessGateway
from reference_app.email import main as email_main
from reference_app.inventory import main as inventory_main
from reference_app.inventory.orders import router as orders_router
from reference_app.inventory.routes import router as inventory_router
from reference_app.payment import main as payment_main
from reference_app.payment.routes import router as payment_router
from reference_app.settings import DemoSettings
from reference_app.user import main as user_main
from reference_app.user.routes import router as user_router
from reference_app.worker import main as worker_main

__all__ = ["WALK_ADMIN_EMAIL", "app_from_env", "create_app", "demo_settings"]

log = logging.getLogger("reference_app.demo")

WALK_ADMIN_EMAIL = "admin@example.com"
"""The guided walk's admin: an admin in the demo even when ``ADMIN_EMAILS`` is unset."""

_WIRES = (user_main.wire, inventory_main.wire, payment_main.wire, email_main.wire, worker_main.wire)
"""Consumers subscribe before the worker's outbox relay starts sending."""


def demo_settings(
    settings: DemoSettings | None = None, *, admins: Iterable[str] = (WALK_ADMIN_EMAIL,)
) -> DemoSettings:
    """The demo's settings: the environment's, in development mode, plus the walk's admin.

    Without ``JWT_ACCESS_SECRET``, tokens are signed with a random secret made
    for this run (not the well-known development one): the demo's data lives
    as long as the process anyway.

    Args:
        settings: the settings to start from; read from the environment when None.
        admins: addresses added to ``ADMIN_EMAILS``.
    """
    if settings is None:
        settings = DemoSettings(environment="development")
    values = settings.model_dump()
    # Development whatever ENVIRONMENT says: plain-HTTP cookies on localhost.
    values["environment"] = "development"
    values["admin_emails"] = settings.admin_emails | {a.strip().lower() for a in admins}
    if settings.jwt_access_secret is None:
        values["jwt_access_secret"] = SecretStr(secrets.token_urlsafe(32))
    return DemoSettings(**values)


def create_app(settings: DemoSettings, *, folder: str | Path | None = None) -> FastAPI:
    """The whole reference app in one FastAPI app, on embedded backends.

    Args:
        settings: every service's settings.
        folder: where the SQLite file goes; a temporary folder (removed on
            exit) when None.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with embedded(folder) as infra, AsyncExitStack() as services:
            app.state.readiness.update(infra.checks)
            for wire in _WIRES:
                await services.enter_async_context(wire(app, settings, infra))
            log.info("demo ready: every service wired on the embedded backends")
            yield

    app = service_app(
        "demo",
        lifespan=lifespan,
        description=(
            "The whole reference app in one process (SQLite, fakeredis, in-memory bus): "
            "the user, inventory and payment APIs, the email service and the worker."
        ),
    )
    app.include_router(user_router)
    app.include_router(inventory_router)
    app.include_router(orders_router)
    app.include_router(payment_router)
    # Innermost (add_middleware would put it outside the request middleware), so
    # the gateway's 401s get a request id, an access-log line and a latency sample.
    app.user_middleware.append(Middleware(InProcessGateway))
    return app


def app_from_env() -> FastAPI:
    """``uvicorn --factory`` entry point: settings from the environment, JSON logs."""
    settings = demo_settings()
    configure_logging("demo", settings.log_level)
    app = create_app(settings)
    tune_gc()  # after the imports and the app are made: they are never garbage
    return app
