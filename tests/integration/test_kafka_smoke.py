"""The harness's Kafka is a real KRaft broker: topics, keyed partitions, consumer groups."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from commercekit.testing.servers import KafkaServer

PARTITIONS = 3
KEYS = 12
PER_KEY = 25


async def _create_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name=topic, num_partitions=PARTITIONS, replication_factor=1)]
        )
    finally:
        await admin.close()


async def _wait_for_balanced_group(consumers: list[AIOKafkaConsumer]) -> None:
    """Poll until the group has spread the partitions over every member."""
    async with asyncio.timeout(60):
        while True:
            for consumer in consumers:
                await consumer.getmany(timeout_ms=100)
            owned = [consumer.assignment() for consumer in consumers]
            if all(owned) and sum(len(parts) for parts in owned) == PARTITIONS:
                return


async def test_consumer_group_shares_three_partitions_and_keeps_key_order(
    kafka_server: KafkaServer,
) -> None:
    bootstrap = kafka_server.bootstrap_servers
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    group = f"group-{topic}"
    await _create_topic(bootstrap, topic)

    consumers = [
        AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        for _ in range(2)
    ]
    for consumer in consumers:
        await consumer.start()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await _wait_for_balanced_group(consumers)
        assignments = [consumer.assignment() for consumer in consumers]
        assert assignments[0].isdisjoint(assignments[1])

        sends = [
            await producer.send(topic, key=f"key-{k}".encode(), value=f"{k}:{seq}".encode())
            for seq in range(PER_KEY)
            for k in range(KEYS)
        ]
        partition_of_key: dict[str, int] = {}
        for send in sends:
            await send
        for k in range(KEYS):
            meta = await (await producer.send(topic, key=f"key-{k}".encode(), value=b"end"))
            partition_of_key[f"key-{k}"] = meta.partition

        seen: dict[str, list[int]] = defaultdict(list)
        handled_by: dict[int, set[int]] = defaultdict(set)
        ends = 0
        async with asyncio.timeout(60):
            while ends < KEYS:
                for index, consumer in enumerate(consumers):
                    batches = await consumer.getmany(timeout_ms=200)
                    for tp, records in batches.items():
                        for record in records:
                            handled_by[index].add(tp.partition)
                            assert record.key is not None
                            assert record.value is not None
                            if record.value == b"end":
                                ends += 1
                                continue
                            key_no, seq = record.value.decode().split(":")
                            seen[f"key-{key_no}"].append(int(seq))
                    if batches:
                        await consumer.commit()

        # every message once, in order per key, each key on one partition
        assert dict(seen.items()) == {f"key-{k}": list(range(PER_KEY)) for k in range(KEYS)}
        # both members of the group did work, on disjoint partitions
        assert handled_by[0]
        assert handled_by[1]
        assert handled_by[0].isdisjoint(handled_by[1])
        assert len(set(partition_of_key.values())) > 1

        # the committed offsets are the group's progress on the broker
        committed = 0
        for consumer in consumers:
            for tp in consumer.assignment():
                committed += await consumer.committed(tp) or 0
        assert committed == KEYS * (PER_KEY + 1)
        assert all(isinstance(tp, TopicPartition) for tp in assignments[0])
    finally:
        await producer.stop()
        for consumer in consumers:
            await consumer.stop()
