"""`DurableReservations` says `BackendUnavailable` for a transient ledger failure only.

A ledger that refuses for now (PostgreSQL starting up, a lost connection) is
`BackendUnavailable`: retry later. A ledger error that retrying cannot fix
(a bug, a constraint) is raised as itself, so a consumer dead-letters it
instead of retrying it forever. Either way a new hold is released.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg.exceptions as pg
import pytest
import redis.asyncio as aioredis
from sqlalchemy import exc as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from commercekit.errors import BackendUnavailable
from commercekit.reservations import (
    DurableReservations,
    RedisReservationStore,
    Reservation,
    ReservationLedger,
)
from commercekit.testing.servers import RedisServer


@pytest.fixture
async def durable(
    engine: AsyncEngine, redis_server: RedisServer
) -> AsyncIterator[DurableReservations]:
    client = aioredis.from_url(redis_server.url)
    store = RedisReservationStore(client, prefix=f"dt{uuid.uuid4().hex[:8]}", guarded=True)
    reservations = DurableReservations(store, ReservationLedger(engine))
    await reservations.start()
    await reservations.set_stock("sku", 10)
    yield reservations
    await client.aclose()


def starting_up() -> sa.DBAPIError:
    error = pg.CannotConnectNowError("the database system is starting up")
    wrapped = sa.DBAPIError.instance("INSERT", None, error, pg.PostgresError)
    assert type(wrapped) is sa.DBAPIError
    return wrapped


def unique_violation() -> sa.DBAPIError:
    error = pg.UniqueViolationError("duplicate key value violates unique constraint")
    return sa.IntegrityError("INSERT", None, error)


async def test_a_ledger_starting_up_is_backend_unavailable_and_the_hold_is_released(
    durable: DurableReservations, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(reservation: Reservation) -> bool:
        raise starting_up()

    monkeypatch.setattr(durable.ledger, "record_created", refuse)
    with pytest.raises(BackendUnavailable, match="hold was released") as caught:
        await durable.reserve([("sku", 3)], ttl=60, owner="u")
    assert isinstance(caught.value.__cause__, sa.DBAPIError)
    level = await durable.stock("sku")
    assert (level.available, level.held) == (10, 0)


async def test_a_permanent_ledger_error_is_raised_as_itself_and_the_hold_is_released(
    durable: DurableReservations, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(reservation: Reservation) -> bool:
        raise unique_violation()

    monkeypatch.setattr(durable.ledger, "record_created", broken)
    with pytest.raises(sa.IntegrityError):
        await durable.reserve([("sku", 3)], ttl=60, owner="u")
    level = await durable.stock("sku")
    assert (level.available, level.held) == (10, 0)


async def test_a_permanent_error_recording_a_transition_is_raised_as_itself(
    durable: DurableReservations, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold = await durable.reserve([("sku", 1)], ttl=60, owner="u")

    async def broken(reservation: Reservation) -> bool:
        raise unique_violation()

    monkeypatch.setattr(durable.ledger, "record_transition", broken)
    with pytest.raises(sa.IntegrityError):
        await durable.confirm(hold.id)


async def test_a_transient_error_recording_a_transition_is_backend_unavailable(
    durable: DurableReservations, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold = await durable.reserve([("sku", 1)], ttl=60, owner="u")

    async def refuse(reservation: Reservation) -> bool:
        raise starting_up()

    monkeypatch.setattr(durable.ledger, "record_transition", refuse)
    with pytest.raises(BackendUnavailable, match="retrying the call records it"):
        await durable.confirm(hold.id)
