"""The `EventBus` contract on `KafkaEventBus` and a real broker."""

from __future__ import annotations

from collections import defaultdict
from typing import ClassVar

import pytest
from aiokafka import AIOKafkaProducer

from commercekit.events import DeadLetter, EventBus, KafkaEventBus, TopicNames, create_topics
from commercekit.testing import BusFactory, EventBusContract, eventually
from commercekit.testing.servers import KafkaServer

from .helpers import dead_letters


class TestKafkaEventBus(EventBusContract):
    patience: ClassVar[float] = 60.0
    quiet: ClassVar[float] = 0.5

    @pytest.fixture
    async def make_bus(self, kafka_server: KafkaServer, topics: TopicNames) -> BusFactory:
        bootstrap = kafka_server.bootstrap_servers
        await create_topics(bootstrap, topics=topics, partitions=3)
        return lambda retry: KafkaEventBus(
            bootstrap, topics=topics, retry=retry, session_timeout_ms=6000
        )

    async def publish_raw(
        self, bus: EventBus, topic: str, value: bytes | None, key: bytes | None
    ) -> None:
        assert isinstance(bus, KafkaEventBus)
        producer = AIOKafkaProducer(bootstrap_servers=bus.bootstrap_servers)
        await producer.start()
        try:
            await producer.send_and_wait(topic, value, key=key)
        finally:
            await producer.stop()

    async def dead_letters(self, bus: EventBus, expected: int) -> list[DeadLetter]:
        assert isinstance(bus, KafkaEventBus)
        bootstrap = bus.bootstrap_servers
        assert isinstance(bootstrap, str)
        return await dead_letters(bootstrap, bus.topics, expected)

    async def joined(self, bus: EventBus) -> None:
        """Every member of every group owns partitions, and each group owns them all."""
        assert isinstance(bus, KafkaEventBus)

        def settled() -> bool:
            members: dict[str, list[set[tuple[str, int]]]] = defaultdict(list)
            for consumer in bus._consumers:  # each member's own partitions
                owned = consumer.assignment()
                members[consumer.group].append({(tp.topic, tp.partition) for tp in owned})
            wanted = 3 * len(bus.topics.catalog.topics)
            return all(
                all(sets) and len(set().union(*sets)) == sum(map(len, sets)) == wanted
                for sets in members.values()
            )

        await eventually(settled, within=self.patience, every=0.05)
