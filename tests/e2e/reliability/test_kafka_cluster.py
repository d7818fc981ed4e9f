"""A Kafka broker lost: the reference app on a three-broker cluster, one broker SIGKILLed.

The stack of this module is a fault stack (its own PostgreSQL and Redis,
every service a process behind nginx) whose Kafka is a `KafkaCluster` of
three KRaft nodes: topics have three replicas, two must hold a write
before it is acknowledged (``min.insync.replicas``), and the services'
producers publish with ``acks=all``, idempotently. Each test SIGKILLs a
broker that leads partitions of the ``payments`` topic while events flow,
and asserts, without helping, that nothing acknowledged is lost and
nothing happens twice: every payment has one outcome, every outbox row
reaches Kafka, every consumer group goes on with the partitions it lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import secrets
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from reference_app.launch import SERVICES, LocalStack, ServiceSpec, UvicornServer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from commercekit.events import TopicNames
from commercekit.testing.pytest_plugin import unavailable
from commercekit.testing.servers import (
    KafkaCluster,
    NginxServer,
    PostgresServer,
    RedisServer,
    Server,
    ServerNotAvailable,
    free_port,
)
from tests.e2e.reliability.conftest import Tried
from tests.e2e.reliability.faults_helpers import (
    ADMIN_EMAIL,
    REPLICAS,
    RESERVATION_TTL_SECONDS,
    Books,
    FaultStack,
    Shopper,
    Shoppers,
    eventually,
    mails,
    mails_to,
    settled,
)
from tests.e2e.reliability.test_faults import (
    EXPECTED_MAILS,
    EXPECTED_RESERVATION,
    EXPECTED_STATUS,
    PLANS,
    all_ready,
    dead_letters,
    quiet,
    stock_of,
)

BROKERS = 3
BUDGET = 90.0
"""Seconds each test may take, from its first request to its last assertion."""
TOPICS = TopicNames()
PAYMENTS = TOPICS.topic("payments")
EVERY_TOPIC = [*(TOPICS.topic(t) for t in TOPICS.catalog.topics), "__consumer_offsets"]

# A hard bound on each test's body (the module's stack starts once, outside it).
pytestmark = pytest.mark.timeout(BUDGET + 30, func_only=True)


# --------------------------------------------------------------------- stack
@dataclass
class ClusterStack(FaultStack):
    """A fault stack whose Kafka is a cluster of `BROKERS` nodes."""

    kafka: KafkaCluster  # type: ignore[assignment]


@contextlib.contextmanager
def cluster_stack(workdir: Path) -> Iterator[ClusterStack]:
    """PostgreSQL, Redis, a three-broker Kafka cluster and the reference app on them."""
    reason = NginxServer.missing() or KafkaCluster.missing()
    if reason is not None:
        unavailable(reason)
    redis = RedisServer(workdir / "redis", port=free_port())
    postgres = PostgresServer(workdir / "postgres", port=free_port())
    cluster = KafkaCluster(workdir / "kafka", brokers=BROKERS)
    servers: list[Server | KafkaCluster] = [redis, postgres, cluster]
    try:
        for server in servers:
            try:
                server.start()
            except ServerNotAvailable as exc:
                unavailable(str(exc))
        env = {
            "ENVIRONMENT": "production",
            "JWT_ACCESS_SECRET": secrets.token_urlsafe(48),
            "ADMIN_EMAILS": ADMIN_EMAIL,
            "DATABASE_URL": postgres.url,
            "REDIS_URL": redis.url,
            "KAFKA_BROKER": cluster.bootstrap_servers,  # all three
            "KAFKA_REPLICATION_FACTOR": str(cluster.replication_factor),
            "LOG_LEVEL": "INFO",
            "RESERVATION_TTL_SECONDS": str(RESERVATION_TTL_SECONDS),
            "SWEEP_INTERVAL_SECONDS": "0.5",
            "RECONCILE_INTERVAL_SECONDS": "3",
            "REFUND_RETRY_SECONDS": "2",
            "OUTBOX_POLL_SECONDS": "0.2",
            # Outcomes wait in the outbox while the relays are paused (the relay test):
            # no re-drive of them meanwhile, the outbox alone must deliver them.
            "PAYMENT_REDRIVE_AFTER_SECONDS": "300",
        }
        services = [
            ServiceSpec(s.name, s.factory, s.placeholder, REPLICAS.get(s.name, 1)) for s in SERVICES
        ]
        with LocalStack(workdir / "app", env=env, services=services) as app:
            yield ClusterStack(workdir, redis, postgres, cluster, app)
    finally:
        for server in reversed(servers):
            server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterStack]:
    """The reference app on a Kafka cluster of its own (the tests kill its brokers)."""
    with cluster_stack(tmp_path_factory.mktemp("kafka-cluster")) as running:
        yield running


@pytest.fixture(autouse=True)
async def healthy(stack: ClusterStack) -> None:
    """Start each test on three brokers, every replica in sync, every service ready.

    Only before: the stack is this module's, so nothing after its last test needs it whole.
    """
    await _heal(stack)


async def _heal(stack: ClusterStack) -> None:
    for node in stack.kafka.nodes:
        if not node.running:
            # In a thread: the readiness probe runs an event loop of its own.
            await asyncio.to_thread(node.start)
    for group in stack.app.processes.values():
        for process in group:
            if process.running:
                signal_group(process, signal.SIGCONT)  # paused by a failed test
            else:
                process.start()
    await eventually(lambda: stack.kafka.in_sync(EVERY_TOPIC), "every replica back in sync")
    await settled(lambda: all_ready(stack), "every service to be ready", 90)


@pytest.fixture
async def shoppers(stack: ClusterStack) -> AsyncIterator[Shoppers]:
    """Signs shoppers in on this stack's gateway."""
    async with Shoppers(stack) as signed:
        yield signed


@pytest.fixture
async def admin(shoppers: Shoppers) -> Shopper:
    """The shopkeeper."""
    return await shoppers.sign_in(ADMIN_EMAIL)


@pytest.fixture
async def books(stack: ClusterStack) -> AsyncIterator[Books]:
    """Read-only views of this stack's Redis and ledger."""
    async with Books(stack) as opened:
        yield opened


@pytest.fixture
def started() -> dt.datetime:
    """When the test started (UTC), to read only its own log lines."""
    return dt.datetime.now(dt.UTC)


# ------------------------------------------------------------------- helpers
async def leaders_of(stack: ClusterStack, topic: str) -> dict[int, list[int]]:
    """Node id -> the partitions of `topic` it leads."""
    led: dict[int, list[int]] = {}
    for partition, leader in sorted((await stack.kafka.leaders(topic)).items()):
        led.setdefault(leader, []).append(partition)
    return led


async def failed_over(stack: ClusterStack, victim: int) -> float:
    """Wait until a live broker leads every partition `victim` led; the seconds it took."""
    began = time.monotonic()

    async def moved() -> bool:
        leaders = await stack.kafka.leaders(PAYMENTS)
        return bool(leaders) and all(leader not in (victim, -1) for leader in leaders.values())

    await eventually(moved, f"the payments partitions of broker {victim} to get a new leader")
    return time.monotonic() - began


async def last_outbox_id(engine: AsyncEngine) -> int:
    """The id of the newest outbox row (0: none)."""
    async with engine.connect() as conn:
        found = await conn.execute(text("SELECT coalesce(max(id), 0) FROM commercekit_outbox"))
        return int(found.scalar_one())


async def outbox_after(engine: AsyncEngine, last_id: int) -> dict[str, bool]:
    """The outbox rows written after row `last_id`: event id -> sent."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT event_id, sent_at IS NOT NULL FROM commercekit_outbox WHERE id > :last"),
            {"last": last_id},
        )
        return {str(event_id): bool(sent) for event_id, sent in rows}


async def unsent(engine: AsyncEngine) -> int:
    """Rows of the outbox not yet marked sent."""
    async with engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    text("SELECT count(*) FROM commercekit_outbox WHERE sent_at IS NULL")
                )
            ).scalar_one()
        )


async def database_now(engine: AsyncEngine) -> dt.datetime:
    """PostgreSQL's clock."""
    async with engine.connect() as conn:
        now: dt.datetime = (await conn.execute(text("SELECT clock_timestamp()"))).scalar_one()
        return now


async def relays_mid_batch(engine: AsyncEngine, since: dt.datetime) -> int:
    """Relay transactions begun after `since` that hold a batch of rows and publish it.

    A relay selects its rows ``FOR UPDATE``, publishes them, then marks
    them sent, in one transaction: between the select and the update its
    connection is idle in that transaction, its last query one on the outbox.
    """
    async with engine.connect() as conn:
        found = await conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE state = 'idle in transaction' AND xact_start > :since "
                "AND query ILIKE 'SELECT%commercekit_outbox%'"
            ),
            {"since": since},
        )
        return int(found.scalar_one())


def signal_group(process: UvicornServer, sig: signal.Signals) -> None:
    """Send `sig` to a service process (the leader of its process group)."""
    if process.pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)


async def on_kafka(stack: ClusterStack, topics: list[str]) -> Counter[str]:
    """How many times each event id is on `topics`, read from the start to the end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=stack.kafka.bootstrap_servers, enable_auto_commit=False
    )
    seen: Counter[str] = Counter()
    await consumer.start()
    try:
        partitions = [
            TopicPartition(topic, p) for topic in topics for p in await stack.kafka.leaders(topic)
        ]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        for partition, offset in (await consumer.beginning_offsets(partitions)).items():
            consumer.seek(partition, offset)
        while any([await consumer.position(tp) < ends[tp] for tp in partitions]):
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    with contextlib.suppress(ValueError, TypeError, KeyError):
                        seen[str(json.loads(record.value)["id"])] += 1
    finally:
        await consumer.stop()
    return seen


async def settle_payments(flows: dict[str, Shopper]) -> dict[str, dict[str, Any]]:
    """Wait until every payment has its outcome (and each refund is completed)."""

    async def payments() -> dict[str, dict[str, Any]] | None:
        found = {}
        for rid, shopper in flows.items():
            answer = await shopper.payment(rid)
            assert answer.status_code == 200, answer.text
            payment = answer.json()
            if payment["status"] == "processing" or any(
                r["status"] != "completed" for r in payment["refunds"]
            ):
                return None
            found[rid] = payment
        return found

    return await eventually(payments, "every payment to settle", within=BUDGET)


def within_budget(began: float) -> float:
    """Fail if the test ran past `BUDGET`; the seconds it took."""
    took = time.monotonic() - began
    assert took < BUDGET, f"the test took {took:.0f}s, more than its {BUDGET:.0f}s"
    return took


# -------------------------------------------------------------- the storm
SHOPPERS = 6  # two of each plan
FLOWS_PER_SHOPPER = 8  # 48 payments
CONCURRENCY = 16
"""Payments in flight at once through the gateway."""


async def test_the_payments_leader_killed_in_a_payment_storm_settles_each_payment_once(
    stack: ClusterStack,
    shoppers: Shoppers,
    admin: Shopper,
    books: Books,
    started: dt.datetime,
    tried: Tried,
) -> None:
    began = time.monotonic()
    first_row = await last_outbox_id(books.engine)
    price, stock = "3.00", 80
    product = await shoppers.product(admin, stock=stock, price=price)
    crowd = await shoppers.many(SHOPPERS)
    plan_of = {s.id: PLANS[i % len(PLANS)] for i, s in enumerate(crowd)}
    flows: dict[str, Shopper] = {}  # reservation id -> its shopper

    async def hold(shopper: Shopper) -> None:
        for _ in range(FLOWS_PER_SHOPPER):
            held = await shopper.reserve(product["id"])
            assert held.status_code == 201, held.text
            reservation_id = held.json()["reservationId"]
            flows[reservation_id] = shopper
            if plan_of[shopper.id] == "late":  # cancelled: its payment is refunded
                cancel = await shopper.cancel(reservation_id)
                assert cancel.status_code == 200, cancel.text

    await asyncio.gather(*(hold(s) for s in crowd))

    # The victim: the broker coordinating the inventory group (its consumers must find
    # another and rejoin), which leads payments partitions too; else partition 0's leader.
    led = await leaders_of(stack, PAYMENTS)
    coordinator = await stack.kafka.coordinator("inventory")
    victim = coordinator if coordinator in led else (await stack.kafka.leaders(PAYMENTS))[0]
    victim_partitions = led[victim]
    also = ", the inventory group's coordinator too," if victim == coordinator else ""

    gate = asyncio.Semaphore(CONCURRENCY)
    statuses: list[int] = []
    killed_after: list[int] = []

    async def pay(reservation_id: str, shopper: Shopper) -> None:
        plan = plan_of[shopper.id]
        method = "tok_success" if plan == "late" else plan
        async with gate:
            paid = await shopper.pay(reservation_id, price, method)
        statuses.append(paid.status_code)
        if len(statuses) == len(flows) // 3:  # a third answered, their events in flight
            stack.kafka.kill(victim)
            killed_after.append(len(statuses))

    await asyncio.gather(*(pay(rid, shopper) for rid, shopper in flows.items()))
    assert killed_after, "the broker was not killed"
    assert statuses == [202] * len(flows), Counter(statuses)
    failover = await failed_over(stack, victim)
    assert not stack.kafka.node(victim).running  # everything below happens without it

    found = await settle_payments(flows)
    for rid, shopper in flows.items():
        plan, payment = plan_of[shopper.id], found[rid]
        assert payment["status"] == EXPECTED_STATUS[plan], (plan, payment)
        if plan == "late":
            [refund] = payment["refunds"]  # exactly one
            assert refund["reason"] == "RESERVATION_CANCELLED", refund
        else:
            assert payment["refunds"] == [], payment  # no second confirmation refunded
        state = await shopper.reservation(rid)
        assert state.json()["status"] == EXPECTED_RESERVATION[plan], (plan, state.json())
    per_shopper = {
        s.id: sorted(["user.created"] + EXPECTED_MAILS[plan_of[s.id]] * FLOWS_PER_SHOPPER)
        for s in crowd
    }

    async def all_mailed() -> None:
        sent = mails(stack)
        for shopper in crowd:
            got = mails_to(sent, shopper.email)
            assert got == per_shopper[shopper.id], (shopper.email, got)

    await settled(all_mailed, "every mail, once", BUDGET)
    await quiet(stack)  # every group's lag 0 on two brokers: the consumers went on
    await all_mailed()  # nothing was in flight any more: no duplicate came after
    assert dead_letters(stack, started) == []
    rows = await outbox_after(books.engine, first_row)
    assert rows
    assert all(rows.values()), "an outbox row was not sent"
    seen = await on_kafka(stack, [TOPICS.topic(t) for t in TOPICS.catalog.topics])
    assert not [event_id for event_id in rows if not seen[event_id]], "an event is not on Kafka"
    sold = sum(1 for shopper in flows.values() if plan_of[shopper.id] == "tok_success")
    final = await books.conserved(product["sku"])
    assert (final.redis.available, final.redis.held, final.redis.sold) == (stock - sold, 0, sold)
    assert await stock_of(admin, product["id"]) == stock - sold
    took = within_budget(began)
    tried(
        "fault survived",
        f"Kafka cluster of {BROKERS}: the leader of payments partitions {victim_partitions}"
        f"{also} SIGKILLed after "
        f"{killed_after[0]} of {len(flows)} concurrent payments: new leaders in "
        f"{failover:.0f}s, each payment one outcome, each late one refunded once, "
        f"each mail sent once, {len(rows)} outbox events all on Kafka ({took:.0f}s)",
    )


# -------------------------------------------------------------- the relay
RELAY_FLOWS = 120
"""Payments left in the outbox while the relays are paused: one relay batch or so."""


async def test_a_leader_killed_mid_outbox_batch_publishes_every_row_once_in_effect(
    stack: ClusterStack,
    shoppers: Shoppers,
    admin: Shopper,
    books: Books,
    started: dt.datetime,
    tried: Tried,
) -> None:
    began = time.monotonic()
    first_row = await last_outbox_id(books.engine)
    price, stock = "2.00", RELAY_FLOWS
    product = await shoppers.product(admin, stock=stock, price=price)
    crowd = await shoppers.many(4)
    workers = stack.processes("worker")  # the outbox relays: paused, the outcomes wait
    for worker in workers:
        signal_group(worker, signal.SIGSTOP)

    flows: dict[str, Shopper] = {}
    gate = asyncio.Semaphore(CONCURRENCY)

    async def flow(shopper: Shopper) -> None:
        async with gate:
            held = await shopper.reserve(product["id"])
            assert held.status_code == 201, held.text
            reservation_id = held.json()["reservationId"]
            flows[reservation_id] = shopper
            paid = await shopper.pay(reservation_id, price)
            assert paid.status_code == 202, paid.text

    await asyncio.gather(*(flow(crowd[i % len(crowd)]) for i in range(RELAY_FLOWS)))
    backlog = await unsent(books.engine)
    assert backlog >= RELAY_FLOWS  # every outcome waits in the outbox

    led = await leaders_of(stack, PAYMENTS)
    victim = max(led, key=lambda node_id: (len(led[node_id]), -node_id))
    caught: list[int] = []  # the unsent rows when the broker died

    resumed = await database_now(books.engine)

    async def kill_mid_batch() -> None:
        while not await relays_mid_batch(books.engine, resumed):
            if not await unsent(books.engine):
                pytest.fail("the relays published the backlog before a batch was seen in flight")
            await asyncio.sleep(0.002)
        stack.kafka.kill(victim)
        caught.append(await unsent(books.engine))

    watching = asyncio.create_task(kill_mid_batch())
    for worker in workers:
        signal_group(worker, signal.SIGCONT)
    await asyncio.wait_for(watching, timeout=30)
    [unsent_at_kill] = caught
    assert unsent_at_kill > 0, "the batch was marked sent before the broker died"
    failover = await failed_over(stack, victim)

    found = await settle_payments(flows)
    for rid, shopper in flows.items():
        assert found[rid]["status"] == "confirmed", found[rid]
        assert found[rid]["refunds"] == [], found[rid]  # a redelivered confirmation is no refund
        state = await shopper.reservation(rid)
        assert state.json()["status"] == "CONFIRMED", state.json()
    paid_by = Counter(shopper.email for shopper in flows.values())

    async def all_mailed() -> None:
        sent = mails(stack)
        for shopper in crowd:
            got = mails_to(sent, shopper.email)
            want = sorted(["user.created"] + ["payment.confirmed"] * paid_by[shopper.email])
            assert got == want, (shopper.email, got)

    await settled(all_mailed, "every mail, once", BUDGET)
    await eventually(lambda: _none_unsent(books.engine), "every outbox row to be sent")
    await quiet(stack)
    await all_mailed()
    assert dead_letters(stack, started) == []
    rows = await outbox_after(books.engine, first_row)
    assert len(rows) >= RELAY_FLOWS
    assert all(rows.values())
    seen = await on_kafka(stack, [TOPICS.topic(t) for t in TOPICS.catalog.topics])
    missing = [event_id for event_id in rows if not seen[event_id]]
    assert not missing, f"{len(missing)} outbox events are not on Kafka"
    twice = sum(1 for event_id in rows if seen[event_id] > 1)
    final = await books.conserved(product["sku"])
    assert (final.redis.available, final.redis.held, final.redis.sold) == (0, 0, RELAY_FLOWS)
    took = within_budget(began)
    tried(
        "fault survived",
        f"Kafka cluster of {BROKERS}: the leader of payments partitions {led[victim]} "
        f"SIGKILLed while a relay batch was in flight ({unsent_at_kill} of {backlog} outbox rows "
        f"unsent): new leaders in {failover:.0f}s, every row sent and on Kafka "
        f"({twice} published twice), each payment confirmed once, each mail sent once "
        f"({took:.0f}s)",
    )


async def _none_unsent(engine: AsyncEngine) -> bool:
    return await unsent(engine) == 0
