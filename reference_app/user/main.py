"""The user service's app factory.

```console
$ uvicorn --factory reference_app.user.main:app_from_env --port 8001
```
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from commercekit.auth import (
    AccessTokens,
    PasswordHasher,
    PasswordHashingPool,
    RefreshTokens,
    SqlRefreshTokenStore,
)
from commercekit.events import Outbox
from reference_app.common import configure_logging, service_app
from reference_app.common.errors import RETRY_AFTER
from reference_app.common.infra import Infra, connect
from reference_app.common.runtime import tune_gc
from reference_app.settings import UserSettings
from reference_app.user.deps import UserServices
from reference_app.user.metrics import PasswordCheckMetrics
from reference_app.user.routes import LEAN_ROUTES, router

__all__ = ["app_from_env", "create_app", "wire"]

log = logging.getLogger("reference_app.user")

_MAX_SESSION = dt.timedelta(days=90)


@asynccontextmanager
async def wire(app: FastAPI, settings: UserSettings, infra: Infra) -> AsyncIterator[None]:
    """Build the user service's adapters on `infra` (``app.state.user``)."""
    hasher = PasswordHasher()
    # Password checks run on threads of their own, a bounded number at once,
    # so a login flood never makes the gateway's token check wait.
    passwords = PasswordHashingPool(
        hasher,
        concurrency=settings.password_hash_concurrency,
        queue=settings.password_hash_queue,
        retry_after=RETRY_AFTER,
    )
    # Compute the dummy hash now, so the first unknown-user login is not slower.
    await passwords.verify(None, "warm-up")
    ttl = dt.timedelta(seconds=settings.refresh_token_ttl_seconds)
    app.state.user = UserServices(
        settings=settings,
        engine=infra.engine,
        sessions=infra.sessions,
        passwords=passwords,
        tokens=AccessTokens(settings.jwt),
        refresh=RefreshTokens(
            SqlRefreshTokenStore(infra.engine), ttl=ttl, max_lifetime=max(ttl, _MAX_SESSION)
        ),
        outbox=Outbox(),
    )
    registry = app.state.metrics_registry
    metrics = PasswordCheckMetrics(passwords)
    registry.register(metrics)
    try:
        async with passwords:
            yield
    finally:
        registry.unregister(metrics)


def create_app(settings: UserSettings, *, lean: bool = True) -> FastAPI:
    """The user service, wired to the database `settings` names.

    With `lean`, the gateway's token check is answered without FastAPI's
    per-request work (`reference_app.common.lean`); without it, by its
    FastAPI route alone (the same answers).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with connect(settings, client_id="user-service") as infra:
            app.state.readiness.update(infra.checks)
            async with wire(app, settings, infra):
                log.info("user service ready")
                yield

    app = service_app(
        "user",
        lifespan=lifespan,
        description="Signup, login, refresh-token rotation, logout, and the gateway's verify.",
        lean=LEAN_ROUTES if lean else (),
    )
    app.include_router(router)
    return app


def app_from_env() -> FastAPI:
    """``uvicorn --factory`` entry point: settings from the environment, JSON logs."""
    settings = UserSettings()
    configure_logging("user", settings.log_level)
    app = create_app(settings)
    tune_gc()  # after the imports and the app are made: they are never garbage
    return app
