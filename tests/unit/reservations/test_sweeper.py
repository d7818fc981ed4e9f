from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from fakeredis import FakeAsyncRedis

from commercekit.errors import BackendUnavailable, ConfigurationError
from commercekit.reservations import ExpirySweeper, RedisReservationStore, Reservation


@pytest.fixture
async def store() -> AsyncIterator[RedisReservationStore]:
    client = FakeAsyncRedis()
    yield RedisReservationStore(client)
    await client.aclose()


async def _due_holds(store: RedisReservationStore, count: int) -> list[Reservation]:
    await store.set_stock("A", count)
    holds = [await store.reserve([("A", 1)], ttl=0.01, owner="u") for _ in range(count)]
    await asyncio.sleep(0.05)
    return holds


async def test_one_sweep_drains_a_backlog_larger_than_a_batch(
    store: RedisReservationStore,
) -> None:
    holds = await _due_holds(store, 23)
    sweeper = ExpirySweeper(store, batch_size=5)
    expired = await sweeper.sweep_once()
    assert {r.id for r in expired} == {h.id for h in holds}
    assert sweeper.expired_total == 23
    assert (await store.stock("A")).available == 23


async def test_a_failing_callback_is_logged_and_the_expiry_stands(
    store: RedisReservationStore, caplog: pytest.LogCaptureFixture
) -> None:
    holds = await _due_holds(store, 3)
    seen: list[str] = []

    async def flaky(reservation: Reservation) -> None:
        seen.append(reservation.id)
        if len(seen) == 1:
            raise RuntimeError("mail server down")

    expired = await ExpirySweeper(store, on_expired=flaky).sweep_once()
    assert len(expired) == 3
    assert sorted(seen) == sorted(h.id for h in holds)
    assert "on_expired failed" in caplog.text
    assert (await store.stock("A")).held == 0


async def test_the_background_task_sweeps_until_stopped(store: RedisReservationStore) -> None:
    await store.set_stock("A", 1)
    reported: list[str] = []
    sweeper = ExpirySweeper(store, interval=0.02, on_expired=lambda r: reported.append(r.id))
    async with sweeper:
        assert sweeper.running
        hold = await store.reserve([("A", 1)], ttl=0.03, owner="u")
        async with asyncio.timeout(5):
            while not reported:  # noqa: ASYNC110 - waiting on the sweeper's own work
                await asyncio.sleep(0.01)
    assert not sweeper.running
    assert reported == [hold.id]
    await sweeper.stop()  # stopping twice is fine


class _Unreachable(RedisReservationStore):
    calls = 0

    async def expire_due(self, limit: int = 100) -> list[Reservation]:
        self.calls += 1
        raise BackendUnavailable("redis is down")


async def test_an_unreachable_backend_is_retried_at_the_next_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = FakeAsyncRedis()
    down = _Unreachable(client)
    async with ExpirySweeper(down, interval=0.01, jitter=0):
        await asyncio.sleep(0.1)
    await client.aclose()
    assert down.calls >= 3
    assert "backend unavailable" in caplog.text


@pytest.mark.parametrize(
    "options", [{"interval": 0}, {"batch_size": 0}, {"jitter": 1.0}, {"jitter": -0.1}]
)
def test_bad_options_are_refused(options: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        ExpirySweeper(object(), **options)  # type: ignore[arg-type]
