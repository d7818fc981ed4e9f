"""A master dies, its replica takes over: what the store acknowledged is still there.

Redis replicates asynchronously, so a failover loses the writes the replica
had not received yet. With ``replicas=1`` the store acknowledges a write
only once ``WAIT`` says a replica has it; the tests here show the loss
without it (replication cut off before the kill, so it is certain) and its
absence with it, on a real 3-master, 3-replica Redis Cluster and on a plain
master with one replica.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel
from sqlalchemy.ext.asyncio import AsyncEngine

from commercekit.errors import (
    BackendUnavailable,
    InvalidTransition,
    NotReplicated,
    OutOfStock,
    ReservationNotFound,
)
from commercekit.reservations import (
    DurableReservations,
    RedisReservationStore,
    ReservationLedger,
    ReservationStatus,
    ReservationStore,
)
from commercekit.testing.servers import RedisClusterServer, RedisServer

WAIT = dt.timedelta(milliseconds=500)
SKUS = ("HOT-1", "HOT-2", "HOT-3")
T = TypeVar("T")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RedisClusterServer]:
    """A cluster of its own: these tests kill its nodes."""
    server = RedisClusterServer(tmp_path / "cluster", replicas=1)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def client(cluster: RedisClusterServer) -> AsyncIterator[RedisCluster]:
    redis = RedisCluster.from_url(cluster.url, max_connections=64)
    await redis.initialize()
    yield redis
    await redis.aclose()


async def _soon(call: Callable[[], Awaitable[T]]) -> T:
    """`call`, retried while a replica that just (re)joined starts acknowledging writes."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return await call()
        except NotReplicated:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def _store(client: object, replicas: int, prefix: str) -> RedisReservationStore:
    return RedisReservationStore(client, prefix=prefix, replicas=replicas, replica_timeout=WAIT)


async def _cut_replication(master: RedisServer, replica: RedisServer) -> None:
    """Stop `replica` receiving `master`'s writes; it stays up and can still take over.

    The replica is told a wrong password, so after its link is killed it
    cannot sync again: what the master writes from now on is on the master
    only, as it is for the last writes before any crash.
    """
    async with aioredis.Redis(host=replica.host, port=replica.port) as on_replica:
        await on_replica.config_set("masterauth", "not-the-password")
    async with aioredis.Redis(host=master.host, port=master.port) as on_master:
        await on_master.client_kill_filter(_type="replica")
    async with aioredis.Redis(host=replica.host, port=replica.port) as on_replica:
        deadline = time.monotonic() + 10
        while (await on_replica.info("replication"))["master_link_status"] != "down":
            assert time.monotonic() < deadline, "the replica kept its link"
            await asyncio.sleep(0.05)


async def _fail_over(cluster: RedisClusterServer, master: RedisServer) -> RedisServer:
    cluster.kill(master)
    return await asyncio.to_thread(cluster.wait_for_failover, master)


async def _writes_after_replication_is_cut(
    cluster: RedisClusterServer, client: RedisCluster, replicas: int
) -> tuple[RedisReservationStore, list[str], int]:
    """Holds and a sale made while the hot master cannot replicate, then a failover.

    Returns the store, the ids of the holds it acknowledged, and how many
    calls it refused with `NotReplicated`.
    """
    prefix = f"f{uuid.uuid4().hex[:8]}"
    setup = _store(client, 1, prefix)
    await _soon(lambda: setup.set_stock("HOT-1", 10))  # on a replica: survives the failover
    store = _store(client, replicas, prefix)
    master = cluster.master_of(store._stock_key("HOT-1"))
    await _cut_replication(master, cluster.replicas_of(master)[0])

    acknowledged: list[str] = []
    refused = 0
    for owner in ("ann", "bob", "cid"):
        try:
            hold = await store.reserve([("HOT-1", 2)], ttl=600, owner=owner)
        except NotReplicated:
            refused += 1
            continue
        acknowledged.append(hold.id)
    if acknowledged:
        await store.confirm(acknowledged[0])
    await _fail_over(cluster, master)
    return store, acknowledged, refused


async def test_without_wait_a_failover_loses_acknowledged_holds_and_sales(
    cluster: RedisClusterServer, client: RedisCluster
) -> None:
    store, acknowledged, refused = await _writes_after_replication_is_cut(cluster, client, 0)

    assert refused == 0
    assert len(acknowledged) == 3
    for rid in acknowledged:  # three holds (one sold) acknowledged, then gone
        with pytest.raises(ReservationNotFound):
            await store.get(rid)
    level = await store.stock("HOT-1")
    assert (level.available, level.held, level.sold) == (10, 0, 0)  # 6 units sold twice over


async def test_with_wait_nothing_acknowledged_is_lost_and_writes_resume_with_a_replica(
    cluster: RedisClusterServer, client: RedisCluster
) -> None:
    store, acknowledged, refused = await _writes_after_replication_is_cut(cluster, client, 1)

    assert acknowledged == []
    assert refused == 3
    level = await store.stock("HOT-1")
    assert (level.available, level.held, level.sold) == (10, 0, 0)
    assert await store.pending() == []

    # The promoted master has no replica: writes are refused, not risked.
    with pytest.raises(NotReplicated):
        await store.reserve([("HOT-1", 1)], ttl=600, owner="ann")
    dead = next(node for node in cluster.nodes if not node.running)
    await asyncio.to_thread(cluster.revive, dead)  # back as the new master's replica
    hold = await _soon(lambda: store.reserve([("HOT-1", 1)], ttl=600, owner="ann"))
    assert (await _soon(lambda: store.confirm(hold.id))).status is ReservationStatus.CONFIRMED
    level = await store.stock("HOT-1")
    # The refused reserve's hold was released on the master, so nothing leaked.
    assert (level.available, level.held, level.sold) == (9, 0, 1)


@dataclass
class _Storm:
    """What the storm's callers were told."""

    held: dict[str, tuple[str, int]] = field(default_factory=dict)
    confirmed: set[str] = field(default_factory=set)
    unsure: set[str] = field(default_factory=set)  # a confirm that failed: either state
    refused: int = 0
    after_recovery: int = 0
    recovered: bool = False


async def _shop(store: ReservationStore, storm: _Storm, stop: asyncio.Event, n: int) -> None:
    rng = random.Random(n)
    while not stop.is_set():
        sku, quantity = rng.choice(SKUS), rng.randint(1, 3)
        try:
            hold = await store.reserve([(sku, quantity)], ttl=600, owner=f"shopper-{n}")
        except OutOfStock:
            continue
        except BackendUnavailable:
            storm.refused += 1
            await asyncio.sleep(0.02)
            continue
        storm.held[hold.id] = (sku, quantity)
        storm.after_recovery += storm.recovered
        if rng.random() < 0.6:
            try:
                await store.confirm(hold.id)
            except BackendUnavailable:
                storm.unsure.add(hold.id)
                await asyncio.sleep(0.02)
                continue
            except InvalidTransition:  # a retried confirm: it was made
                pass
            storm.confirmed.add(hold.id)


async def _storm(
    cluster: RedisClusterServer,
    client: RedisCluster,
    replicas: int,
    stock: int,
    durable: AsyncEngine | None = None,
) -> tuple[RedisReservationStore, _Storm]:
    """16 shoppers reserve and confirm hot SKUs; their master dies mid-storm.

    The replica falls behind first (its link cut for the storm's last
    0.3 s before the kill), as one does under load or a slow network.
    With `durable`, the shoppers call a `DurableReservations` whose ledger
    is on that engine.
    """
    store = RedisReservationStore(
        client, prefix=f"s{uuid.uuid4().hex[:8]}", replicas=replicas, replica_timeout=WAIT,
        guarded=durable is not None,
    )  # fmt: skip
    shop: ReservationStore = store
    if durable is not None:
        shop = DurableReservations(store, ReservationLedger(durable))
        await shop.start()
    for sku in SKUS:
        await _soon(lambda sku=sku: shop.set_stock(sku, stock))
    master = cluster.master_of(store._stock_key(SKUS[0]))  # shards=1: every SKU's slot

    storm, stop = _Storm(), asyncio.Event()
    shoppers = [asyncio.create_task(_shop(shop, storm, stop, n)) for n in range(16)]
    try:
        await asyncio.sleep(1.0)
        assert len(storm.held) > 50, "the storm made holds before the kill"
        await _cut_replication(master, cluster.replicas_of(master)[0])
        await asyncio.sleep(0.3)
        await _fail_over(cluster, master)
        await asyncio.to_thread(cluster.revive, master)  # a replica again
        storm.recovered = True
        # The storm goes on: give it a second, or up to 10 on a loaded machine,
        # where the revived replica's full sync slows the acknowledgements.
        for tenth in range(100):
            if tenth >= 10 and storm.after_recovery > 50:
                break
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.gather(*shoppers)
    assert storm.refused > 0, "calls during the failover were refused"
    assert storm.after_recovery > 50, "the storm went on after the failover"
    return store, storm


async def _problems(store: RedisReservationStore, storm: _Storm, stock: int) -> list[str]:
    """What Redis shows that contradicts what the shoppers were told."""
    problems = []
    for rid in storm.held:
        try:
            found = (await store.get(rid)).status
        except ReservationNotFound:
            problems.append(f"acknowledged hold {rid} is gone")
            continue
        if rid in storm.confirmed:
            expected = {ReservationStatus.CONFIRMED}
        elif rid in storm.unsure:
            expected = {ReservationStatus.PENDING, ReservationStatus.CONFIRMED}
        else:
            expected = {ReservationStatus.PENDING}
        if found not in expected:
            problems.append(f"acknowledged hold {rid} is {found.value}")
    pending = await store.pending()
    for sku in SKUS:
        level = await store.stock(sku)
        if level.available + level.held + level.sold != stock:
            problems.append(f"{sku}'s units do not add up: {level}")
        if level.held != sum(r.lines[0].quantity for r in pending if r.lines[0].sku == sku):
            problems.append(f"{sku}'s held units are not its pending holds': {level}")
        acknowledged = sum(q for s, q in storm.held.values() if s == sku)
        sold = sum(storm.held[rid][1] for rid in storm.confirmed if storm.held[rid][0] == sku)
        if acknowledged > level.held + level.sold:
            problems.append(f"{sku}: {acknowledged} units acknowledged, {level} in redis")
        if sold > level.sold:
            problems.append(f"{sku}: {sold} units sold, {level} in redis")
    return problems


async def test_a_storm_through_a_failover_keeps_every_acknowledged_hold_and_sale(
    cluster: RedisClusterServer, client: RedisCluster
) -> None:
    store, storm = await _storm(cluster, client, replicas=1, stock=100_000)

    assert await _problems(store, storm, 100_000) == []


async def test_a_durable_storm_through_a_failover_keeps_redis_and_the_ledger_in_step(
    cluster: RedisClusterServer, client: RedisCluster, engine: AsyncEngine
) -> None:
    store, storm = await _storm(cluster, client, replicas=1, stock=100_000, durable=engine)

    assert await _problems(store, storm, 100_000) == []
    ledger = ReservationLedger(engine)
    for rid in storm.held:  # every acknowledged hold has its row
        assert await ledger.get(rid) is not None, rid
    reservations = DurableReservations(store, ledger)
    first = await reservations.reconcile()
    # Refused confirms were made in Redis: reconcile records them, and finds nothing lost.
    assert first.lost_holds == []
    # A refused reserve whose undo was refused too (the replica still gone) left its hold on
    # the master, never acknowledged: reconcile records it, and it expires like any other.
    assert set(first.records_added).isdisjoint(storm.held)
    for rid in first.records_added:
        assert (await reservations.get(rid)).status is ReservationStatus.PENDING
    assert first.stock_repaired == {}
    assert set(first.transitions_recorded) <= storm.unsure
    assert (await reservations.reconcile()).clean
    totals = await ledger.stock_totals()
    for sku in SKUS:
        level = await store.stock(sku)
        assert totals[sku] == (100_000, level.sold)


async def test_the_same_storm_without_wait_loses_acknowledged_holds(
    cluster: RedisClusterServer, client: RedisCluster
) -> None:
    store, storm = await _storm(cluster, client, replicas=0, stock=100_000)

    problems = await _problems(store, storm, 100_000)
    assert any("is gone" in problem for problem in problems), problems
    assert any("units acknowledged" in problem for problem in problems), problems


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer]]:
    """A plain Redis master and one replica of it."""
    master = RedisServer(tmp_path / "master").start()
    replica = RedisServer(
        tmp_path / "replica", extra_args=["--replicaof", master.host, str(master.port)]
    ).start()
    try:
        yield master, replica
    finally:
        replica.stop()
        master.stop()


async def _in_sync(replica: RedisServer) -> None:
    async with aioredis.Redis(host=replica.host, port=replica.port) as on_replica:
        deadline = time.monotonic() + 10
        while (await on_replica.info("replication")).get("master_link_status") != "up":
            assert time.monotonic() < deadline, "the replica did not sync"
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("pipeline", [False, True])
async def test_a_plain_redis_acknowledges_writes_only_while_its_replica_has_them(
    pair: tuple[RedisServer, RedisServer], pipeline: bool
) -> None:
    master, replica = pair
    await _in_sync(replica)
    client = aioredis.Redis.from_url(master.url)
    try:
        store = RedisReservationStore(
            client, prefix=f"p{uuid.uuid4().hex[:8]}", replicas=1, replica_timeout=WAIT,
            pipeline=pipeline,
        )  # fmt: skip
        await _soon(lambda: store.set_stock("SKU-1", 5))
        kept = await store.reserve([("SKU-1", 2)], ttl=600, owner="ann")

        replica.kill()
        with pytest.raises(NotReplicated) as refused:
            await store.reserve([("SKU-1", 1)], ttl=600, owner="bob")
        assert (refused.value.replicas, refused.value.wanted) == (0, 1)
        # The refused hold was released on the master: only ann's units are held.
        assert [r.id for r in await store.pending()] == [kept.id]
        with pytest.raises(NotReplicated):
            await store.confirm(kept.id)
        with pytest.raises(NotReplicated):
            await store.restock("SKU-1", 1)

        replica.start()
        await _in_sync(replica)
        # The refused confirm was made on the master: the retry finds it made.
        with pytest.raises(InvalidTransition) as done:
            await _soon(lambda: store.confirm(kept.id))
        assert done.value.reservation.status is ReservationStatus.CONFIRMED
        await _soon(lambda: store.restock("SKU-1", 1))
    finally:
        await client.aclose()
    on_replica = aioredis.Redis.from_url(replica.url)
    try:
        copy = RedisReservationStore(on_replica, prefix=store.prefix)
        level = await copy.stock("SKU-1")
        assert (level.available, level.held, level.sold) == (4, 0, 2)  # the refused restock undone
        assert (await copy.get(kept.id)).status is ReservationStatus.CONFIRMED
    finally:
        await on_replica.aclose()


async def test_a_retry_reports_a_refused_calls_work_only_once_a_replica_has_it(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    """A retry that finds the work made wrote nothing: the store makes its WAIT count.

    Redis 7.2 and later count only a connection's own writes in WAIT, so
    without the store's marker write the second process would be told
    "already CONFIRMED" while the confirm is on the master only.
    """
    master, replica = pair
    await _in_sync(replica)
    first, second = aioredis.Redis.from_url(master.url), aioredis.Redis.from_url(master.url)
    prefix = f"p{uuid.uuid4().hex[:8]}"
    try:
        store = RedisReservationStore(first, prefix=prefix, replicas=1, replica_timeout=WAIT)
        await _soon(lambda: store.set_stock("SKU-1", 5))
        hold = await store.reserve([("SKU-1", 2)], ttl=600, owner="ann")
        # Another process, whose connection wrote nothing yet: its WAIT alone covers nothing.
        retrying = RedisReservationStore(second, prefix=prefix, replicas=1, replica_timeout=WAIT)
        await retrying.load_scripts()

        assert replica.pid is not None
        os.kill(replica.pid, signal.SIGSTOP)  # connected, but it acknowledges nothing more
        try:
            with pytest.raises(NotReplicated):
                await store.confirm(hold.id)  # made on the master only
            with pytest.raises(NotReplicated):  # not "already CONFIRMED": that may be lost
                await retrying.confirm(hold.id)
            with pytest.raises(NotReplicated):
                await store.reserve([("SKU-1", 1)], ttl=600, owner="bob", idempotency_key="k")
            with pytest.raises(NotReplicated):  # the replay of a refused reserve
                await retrying.reserve([("SKU-1", 1)], ttl=600, owner="bob", idempotency_key="k")
        finally:
            os.kill(replica.pid, signal.SIGCONT)

        with pytest.raises(InvalidTransition) as done:
            await _soon(lambda: retrying.confirm(hold.id))
        assert done.value.reservation.status is ReservationStatus.CONFIRMED
    finally:
        await first.aclose()
        await second.aclose()


class _Sentinel(RedisServer):
    """``redis-server --sentinel`` watching one master as ``shop``."""

    name = "redis-sentinel"

    def __init__(self, workdir: Path, master: RedisServer) -> None:
        super().__init__(workdir)
        self.master = master

    def _prepare(self) -> None:
        (self.workdir / "sentinel.conf").write_text(
            f"port {self.port}\nbind {self.host}\nprotected-mode no\n"
            f"sentinel monitor shop {self.master.host} {self.master.port} 1\n"
            "sentinel down-after-milliseconds shop 1000\n"
            "sentinel failover-timeout shop 5000\n"
        )

    def _command(self) -> list[str]:
        return ["redis-server", str(self.workdir / "sentinel.conf"), "--sentinel"]


async def test_a_sentinel_client_acknowledges_writes_a_replica_has_through_a_failover(
    pair: tuple[RedisServer, RedisServer], tmp_path: Path
) -> None:
    master, replica = pair
    await _in_sync(replica)
    sentinel_server = _Sentinel(tmp_path / "sentinel", master).start()
    sentinel = Sentinel([(sentinel_server.host, sentinel_server.port)], socket_timeout=2)
    client = sentinel.master_for("shop", socket_timeout=2)  # a plain redis.asyncio.Redis
    try:
        store = RedisReservationStore(
            client, prefix=f"p{uuid.uuid4().hex[:8]}", replicas=1, replica_timeout=WAIT
        )
        await _soon(lambda: store.set_stock("SKU-1", 5))
        hold = await store.reserve([("SKU-1", 2)], ttl=600, owner="ann")

        master.kill()
        deadline = time.monotonic() + 30
        while await _master_port(sentinel) != replica.port:
            assert time.monotonic() < deadline, "sentinel did not fail over"
            await asyncio.sleep(0.2)
        # The same client now writes to the promoted replica, which has the hold...
        for _ in range(50):
            try:
                found = await store.get(hold.id)
                break
            except BackendUnavailable:  # the pool's connection to the dead master
                await asyncio.sleep(0.1)
        assert found.status is ReservationStatus.PENDING
        # ...and, with no replica of its own, refuses to acknowledge writes.
        with pytest.raises(NotReplicated):
            await store.confirm(hold.id)

        master.start()  # sentinel makes it a replica of the promoted one
        deadline = time.monotonic() + 30
        while True:
            try:
                await store.restock("SKU-1", 1)
                break
            except NotReplicated:
                assert time.monotonic() < deadline, "the old master did not come back as a replica"
                await asyncio.sleep(0.2)
        level = await store.stock("SKU-1")
        assert (level.available, level.held, level.sold) == (4, 0, 2)
    finally:
        await client.aclose()
        for watcher in sentinel.sentinels:
            await watcher.aclose()
        sentinel_server.stop()


async def _master_port(sentinel: Sentinel) -> int | None:
    try:
        _host, port = await sentinel.discover_master("shop")
    except MasterNotFoundError:  # the master is down and none promoted yet
        return None
    return int(port)


async def test_expiries_no_replica_confirmed_are_reported_once_replicated(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    master, replica = pair
    await _in_sync(replica)
    client = aioredis.Redis.from_url(master.url)
    try:
        store = RedisReservationStore(
            client, prefix=f"p{uuid.uuid4().hex[:8]}", replicas=1, replica_timeout=WAIT
        )
        await _soon(lambda: store.set_stock("SKU-1", 5))
        hold = await store.reserve([("SKU-1", 2)], ttl=dt.timedelta(milliseconds=200), owner="ann")
        await asyncio.sleep(0.4)

        assert replica.pid is not None
        os.kill(replica.pid, signal.SIGSTOP)
        try:
            with pytest.raises(NotReplicated):
                await store.expire_due()  # expired on the master, not acknowledged
        finally:
            os.kill(replica.pid, signal.SIGCONT)
        assert (await store.stock("SKU-1")).available == 5

        expired = await _soon(store.expire_due)  # the next sweep reports it
        assert [(r.id, r.status) for r in expired] == [(hold.id, ReservationStatus.EXPIRED)]
        assert await store.expire_due() == []  # once
    finally:
        await client.aclose()
