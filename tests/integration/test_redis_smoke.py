"""The harness's Redis is a real Redis 7: Lua by SHA, NOSCRIPT, atomicity, restarts."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

import commercekit.testing.servers.redis as redis_servers
from commercekit.testing.servers import RedisClusterServer, RedisServer

TAKE = """
local left = tonumber(redis.call('GET', KEYS[1]) or '0')
local want = tonumber(ARGV[1])
if left < want then return -1 end
return redis.call('DECRBY', KEYS[1], want)
"""


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    pool = aioredis.BlockingConnectionPool.from_url(redis_server.url, max_connections=32)
    client = aioredis.Redis.from_pool(pool)
    await client.flushdb()
    yield client
    await client.aclose()


async def test_server_is_redis_7(client: aioredis.Redis) -> None:
    info = await client.info("server")
    assert str(info["redis_version"]).startswith("7.")


async def test_lua_script_runs_by_sha_and_is_reloaded_after_noscript(
    client: aioredis.Redis,
) -> None:
    await client.set("stock", 10)
    sha = await client.script_load(TAKE)
    assert await client.evalsha(sha, 1, "stock", 3) == 7

    await client.script_flush()
    with pytest.raises(NoScriptError):
        await client.evalsha(sha, 1, "stock", 3)

    take = client.register_script(TAKE)  # reloads on NOSCRIPT by itself
    assert await take(keys=["stock"], args=[3]) == 4
    assert await client.script_exists(sha) == [True]


async def test_concurrent_script_calls_never_take_more_than_there_is(
    client: aioredis.Redis,
) -> None:
    await client.set("stock", 50)
    take = client.register_script(TAKE)
    results = await asyncio.gather(*(take(keys=["stock"], args=[1]) for _ in range(300)))
    assert sum(1 for r in results if r >= 0) == 50
    assert int(await client.get("stock")) == 0


@pytest.mark.parametrize(("persistent", "survives"), [(False, False), (True, True)])
async def test_restart_keeps_data_only_when_persistent(
    tmp_path: Path, persistent: bool, survives: bool
) -> None:
    with RedisServer(tmp_path, persistent=persistent) as server:
        port = server.port
        client = aioredis.from_url(server.url)
        await client.set("key", "value")
        await client.aclose()
        await asyncio.to_thread(server.restart)
        assert server.port == port
        client = aioredis.from_url(server.url)
        assert (await client.get("key") == b"value") is survives
        await client.aclose()
    assert not server.running


def test_a_cluster_node_whose_bus_port_was_taken_starts_on_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between picking a node's bus port and its start, another process may bind it."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    picks = iter([taken.getsockname()[1]])
    real = redis_servers.free_port
    monkeypatch.setattr(redis_servers, "free_port", lambda *a: next(picks, None) or real(*a))
    node = RedisClusterServer(tmp_path).nodes[0]
    try:
        node.start()
        assert redis_servers.redis_command(node.host, node.port, "PING") == b"+PONG"
    finally:
        node.stop()
        taken.close()
