"""Record versions on a real Redis: the same cases as on fakeredis."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.unit.reservations import record_version_cases as cases


@pytest.mark.parametrize(
    "case",
    [
        cases.every_script_writes_the_version,
        cases.version_0_records_are_read,
        cases.newer_records_are_left_alone,
    ],
    ids=lambda case: case.__name__,
)
async def test_record_versions(
    case: Callable[[Any, str], Awaitable[None]], redis_client: aioredis.Redis
) -> None:
    await case(redis_client, f"t{uuid.uuid4().hex[:8]}")
