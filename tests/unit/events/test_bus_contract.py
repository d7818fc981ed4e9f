"""The `EventBus` contract on the in-memory bus (the embedded mode's) and the observed bus."""

from __future__ import annotations

import pytest

from commercekit.events import (
    DeadLetter,
    EventBus,
    EventRetry,
    InMemoryEventBus,
    ObservedEventBus,
    TopicNames,
)
from commercekit.plugins import PluginManager
from commercekit.testing import BusFactory, EventBusContract, eventually


def _memory(bus: EventBus) -> InMemoryEventBus:
    inner = bus.bus if isinstance(bus, ObservedEventBus) else bus
    assert isinstance(inner, InMemoryEventBus)
    return inner


class _InMemoryBackend(EventBusContract):
    async def publish_raw(
        self, bus: EventBus, topic: str, value: bytes | None, key: bytes | None
    ) -> None:
        await _memory(bus).publish_raw(topic, value, key=key)

    async def dead_letters(self, bus: EventBus, expected: int) -> list[DeadLetter]:
        memory = _memory(bus)
        await eventually(lambda: len(memory.dead_letters()) >= expected, within=self.patience)
        return memory.dead_letters()[:expected]


class TestInMemoryEventBus(_InMemoryBackend):
    @pytest.fixture
    def make_bus(self, topics: TopicNames) -> BusFactory:
        return lambda retry: InMemoryEventBus(topics=topics, retry=retry)


class TestObservedEventBus(_InMemoryBackend):
    """The hooks around a bus change nothing of its behaviour."""

    @pytest.fixture
    def make_bus(self, topics: TopicNames) -> BusFactory:
        plugins = PluginManager(load_entrypoints=False)

        def build(retry: EventRetry) -> EventBus:
            return ObservedEventBus(InMemoryEventBus(topics=topics, retry=retry), plugins)

        return build
