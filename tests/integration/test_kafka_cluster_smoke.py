"""The harness's KafkaCluster: three KRaft brokers, replicated topics, a broker lost and back."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from commercekit.errors import BackendUnavailable
from commercekit.events import create_topics
from commercekit.testing.pytest_plugin import unavailable
from commercekit.testing.servers import KafkaCluster
from commercekit.testing.servers.kafka_cluster import BROKER_SESSION_TIMEOUT_MS

PARTITIONS = 6
RECORDS = 300


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """Three brokers of this module's own."""
    reason = KafkaCluster.missing()
    if reason is not None:
        unavailable(reason)
    with KafkaCluster(tmp_path_factory.mktemp("kafka-cluster"), brokers=3) as running:
        yield running


async def _admin(cluster: KafkaCluster) -> AIOKafkaAdminClient:
    live = [node.bootstrap_servers for node in cluster.nodes if node.running]
    admin = AIOKafkaAdminClient(bootstrap_servers=live)
    await admin.start()
    return admin


async def _until(check: Callable[[], Awaitable[bool]], what: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def test_three_brokers_with_their_own_data_replicate_every_topic(
    cluster: KafkaCluster,
) -> None:
    assert cluster.running
    assert len(cluster.bootstrap_servers.split(",")) == 3
    data = [Path(node.workdir) / "data" for node in cluster.nodes]
    assert len(set(data)) == 3
    assert all(folder.is_relative_to(cluster.workdir) for folder in data)
    assert all(any(folder.glob("meta.properties")) for folder in data)

    topic = f"auto-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap_servers, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"created by its first write")
    finally:
        await producer.stop()
    admin = await _admin(cluster)
    try:
        [broker] = await admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, "1")])
        [(_, _, _, _, configs)] = broker.resources
        settings = {name: value for name, value, *_ in configs}
    finally:
        await admin.close()
    assert settings["min.insync.replicas"] == "2"
    assert settings["default.replication.factor"] == "3"
    assert settings["unclean.leader.election.enable"] == "false"
    assert settings["transaction.state.log.replication.factor"] == "3"
    for name in (topic, "__consumer_offsets"):
        for partition in await cluster.partitions(name):
            assert sorted(partition["replicas"]) == [1, 2, 3], (name, partition)


async def test_a_killed_leader_loses_no_acknowledged_record_and_comes_back_in_sync(
    cluster: KafkaCluster,
) -> None:
    topic = f"failover-{uuid.uuid4().hex[:8]}"
    admin = await _admin(cluster)
    try:
        await admin.create_topics(
            [NewTopic(topic, num_partitions=PARTITIONS, replication_factor=3)]
        )
    finally:
        await admin.close()

    leaders: dict[int, int] = {}

    async def created() -> bool:  # each call asks a random broker: wait until all know it
        nonlocal leaders
        leaders = await cluster.leaders(topic)  # the map the check passed with, not a new ask
        return len(leaders) == PARTITIONS and await cluster.in_sync([topic])

    await _until(created, "the topic to be in sync")
    victim = leaders[0]
    led = sorted(p for p, leader in leaders.items() if leader == victim)

    producer = AIOKafkaProducer(
        bootstrap_servers=cluster.bootstrap_servers, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        sent = [
            await producer.send(topic, str(i).encode(), key=str(i % 12).encode())
            for i in range(RECORDS // 2)
        ]
        cluster.kill(victim)  # with records in flight
        assert not cluster.node(victim).running
        sent += [
            await producer.send(topic, str(i).encode(), key=str(i % 12).encode())
            for i in range(RECORDS // 2, RECORDS)
        ]
        await asyncio.gather(*sent)  # every one acknowledged by two replicas at least
    finally:
        await producer.stop()

    async def moved() -> bool:
        now = await cluster.leaders(topic)
        return all(now[p] not in (victim, -1) for p in led)

    await _until(moved, f"new leaders for partitions {led}")
    assert not await cluster.in_sync([topic])  # the dead broker's replicas are out of sync
    assert await cluster.coordinator(f"group-{topic}") != victim

    consumer = AIOKafkaConsumer(
        bootstrap_servers=cluster.bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        for partition, offset in (await consumer.beginning_offsets(partitions)).items():
            consumer.seek(partition, offset)
        got: list[bytes] = []
        async with asyncio.timeout(30):
            while len(got) < RECORDS:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    got += [record.value for record in records]
    finally:
        await consumer.stop()
    assert sorted(got) == sorted(str(i).encode() for i in range(RECORDS))  # none lost, none twice

    await asyncio.to_thread(cluster.start_node, victim)  # same ports, same data
    assert cluster.running
    await _until(lambda: cluster.in_sync([topic]), "the restarted broker to catch up")


async def test_create_topics_answers_quickly_while_a_dead_broker_is_fenced(
    cluster: KafkaCluster,
) -> None:
    servers = cluster.bootstrap_servers.split(",")
    await create_topics(servers, replication_factor=3)
    victim = cluster.nodes[-1].node_id
    cluster.kill(victim)
    try:
        # A service starting now creates its topics (they exist: nothing to do but ask).
        fenced = time.monotonic() + BROKER_SESSION_TIMEOUT_MS / 1000
        while time.monotonic() < fenced:
            with contextlib.suppress(BackendUnavailable):  # a quick refusal is retried
                await asyncio.wait_for(create_topics(servers, replication_factor=3), 10)
    finally:
        await asyncio.to_thread(cluster.start_node, victim)
