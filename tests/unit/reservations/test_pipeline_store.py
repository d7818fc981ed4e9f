"""The reservation contract with pipelined scripts (fakeredis), and the coalescer itself."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fakeredis import FakeAsyncRedis, FakeServer

from commercekit.errors import InvalidRequest, OutOfStock
from commercekit.reservations import RedisReservationStore, ReservationStore
from commercekit.reservations._batch import Coalescer
from commercekit.testing.contracts import KitStoreContract, StoreFactory


def _factory(**options: Any) -> StoreFactory:
    server = FakeServer()
    prefix = f"t{uuid.uuid4().hex[:8]}"

    @contextlib.asynccontextmanager
    async def open_store() -> AsyncIterator[ReservationStore]:
        client = FakeAsyncRedis(server=server)
        try:
            yield RedisReservationStore(client, prefix=prefix, pipeline=True, **options)
        finally:
            await client.aclose()

    return open_store


class TestPipelinedFakeRedisStore(KitStoreContract):
    @pytest.fixture
    def make_store(self) -> StoreFactory:
        return _factory()


class TestPipelinedShardedFakeRedisStore(KitStoreContract):
    """Carts spanning shards run their part scripts through the pipeline too."""

    @pytest.fixture
    def make_store(self) -> StoreFactory:
        return _factory(shards=8, pipeline_limit=3)


# ------------------------------------------------------------------ Coalescer
async def test_calls_of_one_tick_share_one_flush() -> None:
    batches: list[list[int]] = []

    async def flush(items: list[int]) -> list[int]:
        batches.append(items)
        return [i * 10 for i in items]

    batch: Coalescer[int, int] = Coalescer(flush)
    assert await asyncio.gather(*(batch.submit(i) for i in range(5))) == [0, 10, 20, 30, 40]
    assert batches == [[0, 1, 2, 3, 4]]
    assert await batch.submit(7) == 70
    assert batches[-1] == [7]


async def test_limit_splits_a_burst() -> None:
    batches: list[list[int]] = []

    async def flush(items: list[int]) -> list[int]:
        batches.append(items)
        return items

    batch: Coalescer[int, int] = Coalescer(flush, limit=2)
    assert await asyncio.gather(*(batch.submit(i) for i in range(5))) == [0, 1, 2, 3, 4]
    assert batches == [[0, 1], [2, 3], [4]]


async def test_errors_reach_only_their_caller() -> None:
    async def flush(items: list[int]) -> list[int | BaseException]:
        return [ValueError(i) if i % 2 else i for i in items]

    batch: Coalescer[int, int] = Coalescer(flush)
    results = await asyncio.gather(*(batch.submit(i) for i in range(4)), return_exceptions=True)
    assert results[0] == 0
    assert results[2] == 2
    assert isinstance(results[1], ValueError)
    assert isinstance(results[3], ValueError)


async def test_a_failed_flush_fails_every_caller_of_the_batch() -> None:
    async def flush(items: list[int]) -> list[int]:
        raise ConnectionError("down")

    batch: Coalescer[int, int] = Coalescer(flush)
    results = await asyncio.gather(*(batch.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)


async def test_in_flight_bound_gathers_the_next_batch() -> None:
    batches: list[list[int]] = []
    gate = asyncio.Event()

    async def flush(items: list[int]) -> list[int]:
        batches.append(items)
        await gate.wait()
        return items

    batch: Coalescer[int, int] = Coalescer(flush, in_flight=1)
    first = asyncio.ensure_future(batch.submit(0))
    await asyncio.sleep(0.01)
    rest = [asyncio.ensure_future(batch.submit(i)) for i in (1, 2, 3)]
    await asyncio.sleep(0.01)
    assert batches == [[0]]  # the others wait for the running flush
    gate.set()
    assert await first == 0
    assert await asyncio.gather(*rest) == [1, 2, 3]
    assert batches == [[0], [1, 2, 3]]


async def test_a_cancelled_caller_does_not_disturb_the_others() -> None:
    async def flush(items: list[int]) -> list[int]:
        await asyncio.sleep(0.01)
        return items

    batch: Coalescer[int, int] = Coalescer(flush)
    doomed = asyncio.ensure_future(batch.submit(1))
    kept = asyncio.ensure_future(batch.submit(2))
    await asyncio.sleep(0)
    doomed.cancel()
    assert await kept == 2
    assert doomed.cancelled()


def test_bad_limits_are_refused() -> None:
    async def flush(items: list[int]) -> list[int]:
        return items

    with pytest.raises(ValueError, match="limit"):
        Coalescer(flush, limit=0)
    with pytest.raises(ValueError, match="in_flight"):
        Coalescer(flush, in_flight=0)
    with pytest.raises(InvalidRequest):
        RedisReservationStore(FakeAsyncRedis(), pipeline=True, pipeline_limit=0)


# ------------------------------------------------------------- the pipeline
async def test_concurrent_reserves_go_out_in_one_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    client = FakeAsyncRedis(server=FakeServer())
    store = RedisReservationStore(client, pipeline=True)
    await store.set_stock("hot", 10)
    assert await store.available(["hot"]) == {"hot": 10}  # a first call reads the kits too
    sizes: list[int] = []
    real = FakeAsyncRedis.pipeline

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        pipe = real(self, *args, **kwargs)
        execute = pipe.execute

        async def counted(*a: Any, **k: Any) -> Any:
            sizes.append(len(pipe.command_stack))
            return await execute(*a, **k)

        pipe.execute = counted
        return pipe

    monkeypatch.setattr(FakeAsyncRedis, "pipeline", counting)
    results = await asyncio.gather(
        *(store.reserve([("hot", 1)], ttl=60, owner=f"u{i}") for i in range(12)),
        return_exceptions=True,
    )
    held = [r for r in results if not isinstance(r, BaseException)]
    assert len(held) == 10
    assert sum(isinstance(r, OutOfStock) for r in results) == 2
    assert sizes == [12]
    level = await store.stock("hot")
    assert (level.available, level.held) == (0, 10)
    await client.aclose()


async def test_noscript_is_handled_in_a_pipeline() -> None:
    client = FakeAsyncRedis(server=FakeServer())
    store = RedisReservationStore(client, pipeline=True)
    await store.set_stock("sku", 100)
    await client.script_flush()
    holds = await asyncio.gather(
        *(store.reserve([("sku", 1)], ttl=60, owner="u") for _ in range(20))
    )
    assert len({h.id for h in holds}) == 20
    assert (await store.stock("sku")).held == 20
    await client.aclose()
