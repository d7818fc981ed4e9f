"""Every transient failure a route meets is a 503 JSON answer with ``Retry-After``, never a 500."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg.exceptions as pg
import httpx
import pytest
import redis.exceptions as rx
from aiokafka.errors import NotEnoughReplicasError
from fastapi import FastAPI
from reference_app.common.errors import RETRY_AFTER, install_error_handlers
from sqlalchemy import exc as sa

from commercekit.errors import BackendUnavailable


def wrapped(error: Exception) -> BaseException:
    """`error` wrapped as SQLAlchemy's asyncpg dialect does (a plain DBAPIError for most)."""
    return sa.DBAPIError.instance("SELECT 1", None, error, pg.PostgresError)


def raised_from(outer: Exception, inner: Exception) -> Exception:
    outer.__cause__ = inner
    return outer


TRANSIENT: dict[str, Callable[[], BaseException]] = {
    "postgres starting up (57P03)": lambda: wrapped(pg.CannotConnectNowError("starting up")),
    "postgres too many connections (53300)": lambda: wrapped(pg.TooManyConnectionsError("full")),
    "postgres read-only (25006)": lambda: wrapped(pg.ReadOnlySQLTransactionError("read-only")),
    "postgres terminated (57P01)": lambda: wrapped(pg.AdminShutdownError("terminating")),
    "pool timeout": lambda: sa.TimeoutError("QueuePool limit reached"),
    "redis loading": lambda: rx.BusyLoadingError("loading"),
    "redis read-only replica": lambda: rx.ReadOnlyError("read only replica"),
    "kafka not enough replicas": NotEnoughReplicasError,
    "connection refused": lambda: ConnectionRefusedError(111, "refused"),
    "BackendUnavailable": lambda: BackendUnavailable("ledger down"),
    "a wrapper of a transient error": lambda: raised_from(
        RuntimeError("settle failed"), rx.ConnectionError("down")
    ),
}

PERMANENT: dict[str, Callable[[], BaseException]] = {
    "unique violation (23505)": lambda: sa.IntegrityError(
        "INSERT", None, pg.UniqueViolationError("duplicate key")
    ),
    "undefined table": lambda: wrapped(pg.UndefinedTableError("no such table")),
    "redis wrong type": lambda: rx.ResponseError("WRONGTYPE Operation against a key"),
    "a bug": lambda: RuntimeError("a bug"),
    "file not found": lambda: FileNotFoundError(2, "missing"),
}


def app_raising(make: Callable[[], BaseException]) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise make()

    return app


async def get(app: FastAPI) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        return await client.get("/boom")


@pytest.mark.parametrize("case", sorted(TRANSIENT))
async def test_a_transient_failure_is_a_503_with_retry_after(case: str) -> None:
    response = await get(app_raising(TRANSIENT[case]))
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == str(RETRY_AFTER)
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "backend_unavailable"


@pytest.mark.parametrize("case", sorted(PERMANENT))
async def test_a_permanent_failure_is_a_500_without_details(case: str) -> None:
    response = await get(app_raising(PERMANENT[case]))
    assert response.status_code == 500, response.text
    assert "retry-after" not in response.headers
    assert response.json() == {"error": {"code": "internal_error", "message": "internal error"}}
