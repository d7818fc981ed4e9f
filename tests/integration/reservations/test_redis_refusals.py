"""A Redis that refuses writes for now (a replica after a failover) is `BackendUnavailable`.

A primary demoted to a replica answers every write with READONLY until it
is promoted again; the store says "retry later" (`BackendUnavailable`), so
routes answer 503 and consumers wait, and it works again, unchanged, once
Redis takes writes again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ReadOnlyError

from commercekit.errors import BackendUnavailable
from commercekit.reservations import RedisReservationStore
from commercekit.testing.servers import RedisServer, free_port
from commercekit.transient import is_transient


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[aioredis.Redis]:
    with RedisServer(tmp_path) as private:
        connection = aioredis.from_url(private.url)
        yield connection
        await connection.aclose()


async def test_a_read_only_replica_is_backend_unavailable_until_it_takes_writes(
    client: aioredis.Redis,
) -> None:
    store = RedisReservationStore(client, prefix="ro")
    await store.set_stock("A", 5)
    hold = await store.reserve([("A", 2)], ttl=60, owner="u")

    await client.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))  # no such primary
    with pytest.raises(ReadOnlyError) as refused:
        await client.set("probe", "1")
    assert is_transient(refused.value)
    with pytest.raises(BackendUnavailable, match="for now") as caught:
        await store.reserve([("A", 1)], ttl=60, owner="u")
    assert is_transient(caught.value.__cause__)  # type: ignore[arg-type]
    with pytest.raises(BackendUnavailable):
        await store.confirm(hold.id)
    assert (await store.stock("A")).available == 3  # reads still work, nothing changed

    await client.execute_command("REPLICAOF", "NO", "ONE")
    confirmed = await store.confirm(hold.id)
    assert confirmed.status.value == "CONFIRMED"
    level = await store.stock("A")
    assert (level.available, level.held, level.sold) == (3, 0, 2)
