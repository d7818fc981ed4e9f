"""Coalescing concurrent calls: what arrives in one event-loop tick goes out together.

`Coalescer` gathers the items submitted while the event loop runs one batch
of ready callbacks, and hands them to one `flush` call on the next tick;
each submitter gets its own result (or its own exception) back. Nothing
waits for a timer: a lone call costs one ``call_soon`` more, and calls made
together (many clients resumed by one batch of replies) share one round trip.

`ScriptPipeline` uses it to send the EVALSHAs of concurrent reservation calls
in one non-transactional Redis pipeline. Each script is still atomic on its
own; the pipeline only saves round trips and per-call client overhead.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from commercekit.reservations._lua import Script

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:  # C packing when hiredis is installed (redis-py uses it the same way)
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - depends on the installed extras
    _hiredis_pack = None

__all__ = ["Coalescer", "ScriptPipeline"]

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
