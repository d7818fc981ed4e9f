"""The default `EventRetry` waits out every transient failure, not only `BackendUnavailable`."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg.exceptions as pg
import pytest
import redis.exceptions as rx
from sqlalchemy import exc as sa

from commercekit.errors import BackendUnavailable
from commercekit.events import Envelope, EventRetry, InMemoryEventBus, UserCreated
from commercekit.transient import is_transient

FAST = EventRetry(max_attempts=3, initial_backoff=0.001, max_backoff=0.001)


def user() -> Envelope[UserCreated]:
    return Envelope.wrap(UserCreated(user_id="u1", username="n1", email="u1@x.io"), source="tests")


def starting_up() -> sa.DBAPIError:
    """PostgreSQL starting up, as SQLAlchemy's asyncpg dialect raises it: a plain DBAPIError."""
    error = pg.CannotConnectNowError("the database system is starting up")
    wrapped = sa.DBAPIError.instance(None, None, error, pg.PostgresError)
    assert type(wrapped) is sa.DBAPIError
    return wrapped


async def run(bus: InMemoryEventBus, failures: list[BaseException]) -> list[str]:
    """Publish one event to a handler that raises each of `failures`, then succeeds."""
    handled: list[str] = []
    pending = iter(failures)

    async def handle(event: Envelope[Any]) -> None:
        failure = next(pending, None)
        if failure is not None:
            raise failure
        handled.append(event.id)

    bus.subscribe("payments", handle)
    async with bus:
        await bus.publish(user())
        async with asyncio.timeout(10):
            await bus.drain()
    return handled


def test_the_default_policy_classifies_with_is_transient() -> None:
    policy = EventRetry()
    assert policy.transient is is_transient
    assert policy.is_transient(starting_up())
    assert not policy.is_transient(ValueError("bad"))


@pytest.mark.parametrize(
    "failure",
    [
        starting_up(),
        sa.DBAPIError.instance(
            None, None, pg.TooManyConnectionsError("too many"), pg.PostgresError
        ),
        rx.BusyLoadingError("Redis is loading the dataset in memory"),
        rx.ReadOnlyError("You can't write against a read only replica."),
        ConnectionResetError(104, "reset"),
    ],
    ids=["57P03", "53300", "LOADING", "READONLY", "reset"],
)
async def test_a_long_outage_of_any_kind_is_waited_out_not_dead_lettered(
    failure: BaseException,
) -> None:
    bus = InMemoryEventBus(
        retry=EventRetry(max_attempts=3, initial_backoff=0.001, max_backoff=0.001)
    )
    handled = await run(bus, [failure] * 12)  # four times max_attempts
    assert len(handled) == 1
    assert bus.dead_letters() == []


async def test_a_permanent_error_is_still_dead_lettered_after_max_attempts() -> None:
    bus = InMemoryEventBus(
        retry=EventRetry(max_attempts=3, initial_backoff=0.001, max_backoff=0.001)
    )
    unique = sa.DBAPIError.instance(
        None, None, pg.UniqueViolationError("duplicate key"), pg.PostgresError
    )
    handled = await run(bus, [unique] * 5)
    assert handled == []
    assert [letter.attempts for letter in bus.dead_letters()] == [3]


async def test_a_tuple_of_classes_alone_decides_as_before() -> None:
    policy = EventRetry(
        max_attempts=2, initial_backoff=0.001, max_backoff=0.001, transient=(KeyError,)
    )
    assert policy.is_transient(KeyError("k"))
    assert not policy.is_transient(BackendUnavailable("down"))
    bus = InMemoryEventBus(retry=policy)
    assert len(await run(bus, [KeyError("k")] * 6)) == 1
    bus = InMemoryEventBus(retry=policy)
    assert await run(bus, [starting_up()] * 3) == []
    assert [letter.error for letter in bus.dead_letters()] == ["DBAPIError"]


async def test_a_predicate_can_extend_the_default() -> None:
    class Throttled(Exception):
        pass

    policy = EventRetry(
        max_attempts=2,
        initial_backoff=0.001,
        max_backoff=0.001,
        transient=lambda exc: isinstance(exc, Throttled) or is_transient(exc),
    )
    bus = InMemoryEventBus(retry=policy)
    assert len(await run(bus, [Throttled(), starting_up()] * 4)) == 1
    assert bus.dead_letters() == []
