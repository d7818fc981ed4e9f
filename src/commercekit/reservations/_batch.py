"""Coalescing concurrent calls: what arrives in one event-loop tick goes out together.

`Coalescer` gathers the items submitted while the event loop runs one batch
of ready callbacks, and hands them to one `flush` call on the next tick;
each submitter gets its own result (or its own exception) back. Nothing
waits for a timer: a lone call costs one ``call_soon`` more, and calls made
together (many clients resumed by one batch of replies) share one round trip.

`ScriptPipeline` uses it to send the EVALSHAs of concurrent reservation calls
in one non-transactional Redis pipeline. Each script is still atomic on its
own; the pipeline only saves round trips and per-call client overhead.
`ReplicatedScriptPipeline` ends each pipeline with ``WAIT`` on the same
connection, so a batch's writes count only once replicas have them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.cluster import PipelineCommand

from commercekit.errors import BackendUnavailable, NotReplicated
from commercekit.reservations._lua import Script

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:  # C packing when hiredis is installed (redis-py uses it the same way)
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - depends on the installed extras
    _hiredis_pack = None

__all__ = ["SYNC", "Coalescer", "ReplicatedScriptPipeline", "ScriptPipeline", "Unreplicated"]

T = TypeVar("T")
R = TypeVar("R")

Flush = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]


class Coalescer(Generic[T, R]):
    """Run `flush` once for the items submitted in the same event-loop tick.

    Args:
        flush: takes the items, returns one result or exception per item, in
            order; if it raises, every item of the batch gets that exception.
        limit: at most this many items per `flush` call (a bigger burst is
            split, and the parts run concurrently).
        in_flight: at most this many `flush` calls running at once (None: no
            bound); items submitted meanwhile wait and go out together when
            one finishes, which makes bigger batches for a slow `flush`.
    """

    def __init__(
        self, flush: Flush[T, R], *, limit: int = 256, in_flight: int | None = None
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        if in_flight is not None and in_flight < 1:
            raise ValueError(f"in_flight must be at least 1, got {in_flight}")
        self._flush = flush
        self._limit = limit
        self._in_flight = in_flight
        self._items: list[T] = []
        self._waiters: list[asyncio.Future[R]] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, item: T) -> asyncio.Future[R]:
        """Queue `item` for the next flush; await the future for its own result.

        A plain function returning the future (not a coroutine): one
        coroutine frame less per call. Cancelling the awaiting task cancels
        the future, and the flush then skips it.
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[R] = loop.create_future()
        self._items.append(item)
        self._waiters.append(waiter)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._dispatch)
        return waiter

    def _dispatch(self) -> None:
        self._scheduled = False
        while self._items and (self._in_flight is None or len(self._tasks) < self._in_flight):
            if len(self._items) <= self._limit:  # the usual case: hand the lists over
                items, self._items = self._items, []
                waiters, self._waiters = self._waiters, []
            else:
                items, self._items = self._items[: self._limit], self._items[self._limit :]
                waiters, self._waiters = self._waiters[: self._limit], self._waiters[self._limit :]
            task = asyncio.ensure_future(self._run(items, waiters))
            self._tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._items and not self._scheduled:
            self._scheduled = True
            task.get_loop().call_soon(self._dispatch)

    async def _run(self, items: list[T], waiters: list[asyncio.Future[R]]) -> None:
        try:
            results = await self._flush(items)
        except BaseException as exc:  # every caller of the batch hears of it
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for waiter, result in zip(waiters, results, strict=True):
            if waiter.done():  # the caller was cancelled meanwhile
                continue
            if isinstance(result, BaseException):
                waiter.set_exception(result)
            else:
                waiter.set_result(result)


_Call = tuple[Script, Sequence[str], Sequence[object]]
_RELOADS = 3  # a script flushed again between loading and running it is loaded again
_REDIRECTS = 3  # a call MOVED to another node is sent there, at most this many times
_CLUSTER_DOWN = (
    redis_errors.RedisClusterException,
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
)


class ScriptPipeline:
    """EVALSHA calls made concurrently, sent in one pipeline (``transaction=False``).

    A call that meets NOSCRIPT (Redis restarted or ran ``SCRIPT FLUSH``)
    loads its script and runs again; other errors reach only their caller.
    On a plain ``redis.asyncio.Redis`` the commands are packed here and
    written on one connection of the client's pool (redis-py's generic
    packing costs the client more than the script costs Redis); other
    clients go through their own ``pipeline(transaction=False)``.

    Args:
        client: the redis-py asyncio client (``Redis``, ``RedisCluster`` or
            fakeredis's ``FakeAsyncRedis``).
        limit: at most this many calls in one pipeline.
    """

    def __init__(self, client: Any, *, limit: int = 256) -> None:
        self._client = client
        self._batch: Coalescer[_Call, Any] = Coalescer(self._send, limit=limit)
        # A plain redis-py client gets the calls packed here and written on one
        # of its pool's connections: redis-py's generic packing costs more than
        # the script itself. Cluster clients and fakeredis use their pipeline.
        self._direct = type(client) is aioredis.Redis and not client.single_connection_client

    def __call__(
        self, script: Script, keys: Sequence[str], args: Sequence[object]
    ) -> asyncio.Future[Any]:
        """Run `script` on `keys` with `args` in the next pipeline (await the result)."""
        return self._batch.submit((script, keys, args))

    async def _send(self, calls: list[_Call]) -> list[Any]:
        replies = await self._execute(calls)
        for _ in range(_RELOADS):
            missing = [i for i, reply in enumerate(replies) if _no_script(reply)]
            if not missing:
                break
            for script in {calls[i][0].sha: calls[i][0] for i in missing}.values():
                await self._client.script_load(script.source)
            again = await self._execute([calls[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return replies

    async def _execute(self, calls: list[_Call]) -> list[Any]:
        if self._direct:
            return await self._execute_direct(calls)
        async with self._client.pipeline(transaction=False) as pipe:
            for script, keys, args in calls:
                pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies

    async def _execute_direct(self, calls: list[_Call]) -> list[Any]:
        pool = self._client.connection_pool
        try:
            conn = await pool.get_connection()
        except TypeError:  # pragma: no cover - redis-py < 5.3 wants a command name
            conn = await pool.get_connection("EVALSHA")
        try:
            await conn.send_packed_command(b"".join([_pack(*call) for call in calls]))
            return await _read_replies(conn, len(calls))
        except BaseException:
            await conn.disconnect()  # replies may be left unread on it
            raise
        finally:
            await pool.release(conn)


class _InlineScript(Script):
    """A script given as source, not as a file of ``lua/``."""

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
        self._loading = asyncio.Lock()
        self._loads = 0


SYNC = _InlineScript(
    "sync",
    "-- KEYS[1] any key of the shard; returns {}\n"
    "redis.call('SET', KEYS[1], '1', 'PX', 60000)\n"
    "return '{}'\n",
)
"""A write for WAIT to count: run on a shard, its WAIT covers everything
written there before it, by any connection. Since Redis 7.2, WAIT covers
only the writes of its own connection (7.0 counted from the connection's
last command of any kind), so a call that wrote nothing (an idempotent
replay, a transition already made) runs SYNC before it answers."""


class Unreplicated(NotReplicated):
    """`NotReplicated` for one script call, with what the script answered on the master."""

    def __init__(self, reply: Any, *, replicas: int, wanted: int) -> None:
        super().__init__(
            f"redis did not confirm the write on {wanted} replica(s) in time "
            f"({replicas} had it); it was not acknowledged",
            replicas=replicas,
            wanted=wanted,
        )
        self.reply = reply


class ReplicatedScriptPipeline(ScriptPipeline):
    """A `ScriptPipeline` whose writes count only once `replicas` replicas have them.

    Each pipeline ends with ``WAIT replicas timeout_ms`` on the connection
    that carried its scripts (WAIT covers the writes of its own connection
    only). If WAIT reports fewer replicas, every call of that pipeline gets
    `Unreplicated` (with its script's reply) instead of its reply; error
    replies stay as they are (the script wrote nothing).

    On a Redis Cluster client the calls are grouped by the master that
    serves their slot, and each group goes, with its WAIT, over one
    connection of that node (redis-py's cluster pipeline would send WAIT to
    every node on other connections). A MOVED reply updates the client's
    slot map and sends the call again; an unreachable node marks the map
    stale (refreshed before the next pipeline) and fails its calls with
    `BackendUnavailable`.

    Args:
        client: as for `ScriptPipeline`.
        replicas: replicas that must have each write.
        timeout_ms: how long WAIT waits for them (0: forever, which is refused).
        limit: at most this many calls in one pipeline.
    """

    def __init__(self, client: Any, *, replicas: int, timeout_ms: int, limit: int = 256) -> None:
        super().__init__(client, limit=limit)
        self._replicas = replicas
        self._timeout_ms = timeout_ms
        self._wait = _pack_command("WAIT", replicas, timeout_ms)
        self._cluster = hasattr(client, "nodes_manager")
        self._stale = False

    async def _execute(self, calls: list[_Call]) -> list[Any]:
        if self._cluster:
            return await self._execute_cluster(calls)
        if self._direct:
            conn = await _get_connection(self._client.connection_pool)
            try:
                packed = [_pack(*call) for call in calls]
                packed.append(self._wait)
                await conn.send_packed_command(b"".join(packed))
                replies = await _read_replies(conn, len(calls) + 1)
            except BaseException:
                await conn.disconnect()  # replies may be left unread on it
                raise
            finally:
                await self._client.connection_pool.release(conn)
        else:
            async with self._client.pipeline(transaction=False) as pipe:
                for script, keys, args in calls:
                    pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
                pipe.execute_command("WAIT", self._replicas, self._timeout_ms)
                replies = await pipe.execute(raise_on_error=False)
        return self._checked(replies[:-1], replies[-1])

    def _checked(self, replies: list[Any], acked: Any) -> list[Any]:
        """The replies, each turned into `Unreplicated` unless WAIT counted enough replicas."""
        if type(acked) is int and acked >= self._replicas:
            return replies
        count = acked if type(acked) is int else 0
        return [
            reply
            if isinstance(reply, BaseException)
            else Unreplicated(reply, replicas=count, wanted=self._replicas)
            for reply in replies
        ]

    async def _execute_cluster(self, calls: list[_Call]) -> list[Any]:
        client = self._client
        replies: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        for _ in range(_REDIRECTS):
            if self._stale:
                await self._refresh(None)
            try:
                await client.initialize()  # a no-op once the client knows its nodes
            except _CLUSTER_DOWN as exc:
                raise BackendUnavailable(f"redis cluster unreachable: {exc}") from exc
            groups: dict[Any, list[int]] = {}
            for i in todo:
                try:
                    node = client.nodes_manager.get_node_from_slot(client.keyslot(calls[i][1][0]))
                except redis_errors.RedisClusterException as exc:  # slot not covered
                    self._stale = True
                    replies[i] = BackendUnavailable(f"redis cluster: {exc}")
                    continue
                groups.setdefault(node, []).append(i)

            async def send(node: Any, indices: list[int]) -> None:
                commands = [
                    PipelineCommand(n, "EVALSHA", calls[i][0].sha, len(calls[i][1]),
                                    *calls[i][1], *calls[i][2])
                    for n, i in enumerate(indices)
                ]  # fmt: skip
                commands.append(PipelineCommand(len(indices), "WAIT", self._replicas,
                                                self._timeout_ms))  # fmt: skip
                try:
                    await node.execute_pipeline(commands)
                except redis_errors.MaxConnectionsError as exc:  # the client's pool, not the node
                    for i in indices:
                        replies[i] = BackendUnavailable(f"redis node {node.name}: {exc}")
                    return
                except (redis_errors.ConnectionError, redis_errors.TimeoutError) as exc:
                    node.update_active_connections_for_reconnect()
                    await node.disconnect_free_connections()
                    await self._refresh(node.name)
                    for i in indices:
                        replies[i] = BackendUnavailable(f"redis node {node.name}: {exc}")
                    return
                results = [command.result for command in commands]
                for i, reply in zip(indices, self._checked(results[:-1], results[-1]),
                                    strict=True):  # fmt: skip
                    replies[i] = reply

            await asyncio.gather(*(send(node, indices) for node, indices in groups.items()))
            todo = []
            for i, reply in enumerate(replies):
                if isinstance(reply, redis_errors.MovedError):  # not run: the slot moved
                    await client.nodes_manager.move_slot(reply)
                    todo.append(i)
                elif isinstance(reply, redis_errors.ClusterDownError):
                    self._stale = True
            if not todo:
                break
        return replies

    async def _refresh(self, failed: str | None) -> None:
        """Read the cluster's slot map again (now, and before the next pipeline if it fails)."""
        self._stale = True
        with contextlib.suppress(Exception):  # mid-failover: try again next time
            await self._client.nodes_manager.initialize(last_failed_node_name=failed)
            self._stale = False


async def _get_connection(pool: Any) -> Any:
    try:
        return await pool.get_connection()
    except TypeError:  # pragma: no cover - redis-py < 5.3 wants a command name
        return await pool.get_connection("EVALSHA")


async def _read_replies(conn: Any, count: int) -> list[Any]:
    """Read `count` replies; an error reply is returned in its place, not raised.

    redis-py arms a timer for each reply it reads with its socket timeout,
    which costs more than reading a reply; here one deadline covers the
    batch and moves on as replies arrive, so no reply waits much longer
    than the socket timeout (never a hang), at a timer per batch.
    """
    timeout = conn.socket_timeout
    slack = timeout / 100 if timeout else 0.0
    loop = asyncio.get_running_loop()
    replies: list[Any] = []
    try:
        async with asyncio.timeout(None) as deadline:
            moved = -math.inf
            for _ in range(count):
                if timeout and (now := loop.time()) - moved > slack:
                    deadline.reschedule(now + timeout)
                    moved = now
                try:
                    replies.append(await conn.read_response(timeout=math.inf))
                except redis_errors.ResponseError as exc:  # this call's own error
                    replies.append(exc)
    except TimeoutError:  # the deadline (redis-py raises its own TimeoutError)
        raise redis_errors.TimeoutError(
            f"Timeout reading {count} pipelined replies after {timeout}s"
        ) from None
    return replies


def _pack(script: Script, keys: Sequence[str], args: Sequence[object]) -> bytes:
    """EVALSHA as one RESP command (arguments: str, int or bytes)."""
    if _hiredis_pack is not None:
        try:
            return _hiredis_pack(("EVALSHA", script.sha, len(keys), *keys, *args))
        except TypeError:  # an argument hiredis does not take
            pass
    return _pack_python(script, keys, args)


def _pack_command(*args: str | int) -> bytes:
    """Any command as RESP (str and int arguments)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else b"%d" % arg
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _pack_python(script: Script, keys: Sequence[str], args: Sequence[object]) -> bytes:
    """`_pack` without hiredis."""
    out = [b"*%d\r\n$7\r\nEVALSHA\r\n" % (len(keys) + len(args) + 3)]
    for item in (script.sha, len(keys), *keys, *args):
        if type(item) is str:
            data = item.encode()
        elif type(item) is int:
            data = b"%d" % item
        elif isinstance(item, bytes):
            data = item
        else:
            data = str(item).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _no_script(reply: Any) -> bool:
    return isinstance(reply, redis_errors.NoScriptError) or (
        isinstance(reply, redis_errors.ResponseError) and str(reply).startswith("NOSCRIPT")
    )
