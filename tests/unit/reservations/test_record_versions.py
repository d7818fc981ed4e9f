"""Record versions on fakeredis: the embedded backend runs the same scripts."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from fakeredis import FakeAsyncRedis

from commercekit.reservations._records import RECORD_VERSION

from . import record_version_cases as cases


@pytest.fixture
async def client() -> AsyncIterator[Any]:
    redis = FakeAsyncRedis()
    try:
        yield redis
    finally:
        await redis.aclose()


def test_the_scripts_and_python_name_one_version() -> None:
    assert cases.lua_record_version() == RECORD_VERSION


@pytest.mark.parametrize(
    "case",
    [
        cases.every_script_writes_the_version,
        cases.version_0_records_are_read,
        cases.newer_records_are_left_alone,
    ],
    ids=lambda case: case.__name__,
)
async def test_record_versions(case: Callable[[Any, str], Awaitable[None]], client: Any) -> None:
    await case(client, f"t{uuid.uuid4().hex[:8]}")
