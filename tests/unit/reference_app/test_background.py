"""Background loops: the first round comes soon, then one every interval."""

from __future__ import annotations

import asyncio
import time

import pytest
from reference_app.common import background
from reference_app.common.background import MAX_START_JITTER, every


async def test_an_hourly_job_runs_its_first_round_within_seconds_of_the_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Its first round used to wait up to a tenth of the interval: six minutes
    # for an hourly reconciliation, which then ran in the middle of whatever
    # the service was doing by then.
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(background.random, "uniform", lambda low, high: high)
    monkeypatch.setattr(background.asyncio, "sleep", sleep)
    rounds: list[float] = []

    async def job() -> None:
        rounds.append(time.monotonic())

    async with every(3600, job, name="reconcile"):
        while len(rounds) < 2:
            await real_sleep(0)
    assert waits[0] == MAX_START_JITTER  # the jitter's largest draw
    assert waits[1] == 3600


async def test_a_short_loop_keeps_a_tenth_of_its_interval_as_jitter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drawn: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        drawn.append((low, high))
        return 0.0

    monkeypatch.setattr(background.random, "uniform", uniform)

    async def job() -> None:
        return None

    async with every(2.0, job, name="sweep"):
        await asyncio.sleep(0.01)
    assert drawn == [(0, 0.2)]
