"""ObservedEventBus reports what it publishes and what its subscribers handle."""

from __future__ import annotations

import datetime as dt
from typing import Any

from commercekit.events import Envelope, EventBus, InMemoryEventBus, ObservedEventBus
from commercekit.events.catalog import ReservationExpired
from commercekit.plugins import PluginManager, hookimpl


class Watcher:
    def __init__(self) -> None:
        self.published: list[str] = []
        self.consumed: list[tuple[str, str]] = []

    @hookimpl
    def commercekit_event_published(self, event: Envelope[Any]) -> None:
        self.published.append(event.id)

    @hookimpl
    def commercekit_event_consumed(self, event: Envelope[Any], group: str) -> None:
        self.consumed.append((event.id, group))


def _expired(rid: str) -> Envelope[ReservationExpired]:
    payload = ReservationExpired(
        reservation_id=rid,
        owner="u",
        lines=[{"sku": "A", "quantity": 1}],
        expired_at=dt.datetime.now(dt.UTC),
    )
    return Envelope.wrap(payload, source="test")


async def test_published_and_consumed_events_reach_the_hooks() -> None:
    watcher = Watcher()
    bus = ObservedEventBus(InMemoryEventBus(), PluginManager([watcher], load_entrypoints=False))
    assert isinstance(bus, EventBus)
    failures = 0

    async def flaky(event: Envelope[Any]) -> None:
        nonlocal failures
        if event.data.reservation_id == "r-2" and failures == 0:
            failures += 1
            raise RuntimeError("try again")

    bus.subscribe("audit", flaky)
    one, two = _expired("r-1"), _expired("r-2")
    async with bus:
        await bus.publish(one)
        await bus.publish_many([two])
        await bus.bus.drain()  # type: ignore[attr-defined]

    assert watcher.published == [one.id, two.id]
    # r-2 failed once, then succeeded: reported once, after its success
    assert sorted(watcher.consumed) == sorted([(one.id, "audit"), (two.id, "audit")])
    assert failures == 1
