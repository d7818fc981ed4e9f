"""The user service's app factory.

```console
$ uvicorn --factory reference_app.user.main:app_from_env --port 8001
```
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from commercekit.auth import AccessTokens, PasswordHasher, RefreshTokens, SqlRefreshTokenStore
from commercekit.events import Outbox
from reference_app.common import configure_logging, service_app
from reference_app.common.db import migrate, ping
from reference_app.settings import UserSettings
from reference_app.user.deps import UserServices
from reference_app.user.routes import router

__all__ = ["app_from_env", "create_app"]

log = logging.getLogger("reference_app.user")

_STARTUP_ATTEMPTS = 30  # about 30 s for PostgreSQL to come up (compose starts all at once)
_MAX_SESSION = dt.timedelta(days=90)


async def _migrate_when_up(engine: AsyncEngine) -> None:
    for attempt in range(1, _STARTUP_ATTEMPTS + 1):
        try:
            await migrate(engine)
        except (OSError, OperationalError, InterfaceError) as exc:
            if attempt == _STARTUP_ATTEMPTS:
                raise
            log.warning("database not reachable yet (%r); retrying", exc)
            await asyncio.sleep(1.0)
        else:
            return


def create_app(settings: UserSettings) -> FastAPI:
    """The user service, wired to the database `settings` names."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_async_engine(settings.database_dsn, pool_pre_ping=True)
        try:
            await _migrate_when_up(engine)
            hasher = PasswordHasher()
            # Compute the dummy hash now, so the first unknown-user login is not slower.
            await asyncio.to_thread(hasher.verify, None, "warm-up")
            ttl = dt.timedelta(seconds=settings.refresh_token_ttl_seconds)
            app.state.services = UserServices(
                settings=settings,
                engine=engine,
                sessions=async_sessionmaker(engine, expire_on_commit=False),
                hasher=hasher,
                tokens=AccessTokens(settings.jwt),
                refresh=RefreshTokens(
                    SqlRefreshTokenStore(engine), ttl=ttl, max_lifetime=max(ttl, _MAX_SESSION)
                ),
                outbox=Outbox(),
            )
            app.state.readiness = {"postgres": lambda: ping(engine)}
            log.info("user service ready")
            yield
        finally:
            await engine.dispose()

    app = service_app(
        "user",
        lifespan=lifespan,
        description="Signup, login, refresh-token rotation, logout, and the gateway's verify.",
    )
    app.include_router(router)
    return app


def app_from_env() -> FastAPI:
    """``uvicorn --factory`` entry point: settings from the environment, JSON logs."""
    settings = UserSettings()
    configure_logging("user", settings.log_level)
    return create_app(settings)
