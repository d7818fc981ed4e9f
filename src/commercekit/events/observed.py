"""`ObservedEventBus`: any bus, with the event plugin hooks called around it.

```python
bus = ObservedEventBus(KafkaEventBus(bootstrap), plugins)
```

Every event the wrapped bus acknowledges is reported to
``commercekit_event_published``; every event a subscriber's handler
finishes, to ``commercekit_event_consumed``. Everything else is the wrapped
bus's own behaviour.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from commercekit._lifecycle import AsyncLifecycle
from commercekit.events.bus import EventBus, Handler
from commercekit.events.envelope import Envelope

if TYPE_CHECKING:
    from commercekit.plugins import PluginManager

__all__ = ["ObservedEventBus"]


class ObservedEventBus(AsyncLifecycle):
    """An `EventBus` that reports what it publishes and consumes to plugins.

    Args:
        bus: the bus doing the work.
        plugins: whose event hooks are called.
    """

    def __init__(self, bus: EventBus, plugins: PluginManager) -> None:
        self.bus = bus
        self.plugins = plugins

    async def publish(self, event: Envelope[Any]) -> None:
        """See `EventBus.publish`; reported once acknowledged, with its trace context."""
        event = event.in_trace()
        await self.bus.publish(event)
        self.plugins.event_published(event)

    async def publish_many(self, events: Sequence[Envelope[Any]]) -> None:
        """See `EventBus.publish_many`; each reported once all are acknowledged."""
        events = [event.in_trace() for event in events]
        await self.bus.publish_many(events)
        for event in events:
            self.plugins.event_published(event)

    def subscribe(
        self, group: str, handler: Handler, *, types: Iterable[str] | None = None
    ) -> None:
        """See `EventBus.subscribe`; each handled event is reported."""

        async def observed(event: Envelope[Any]) -> None:
            await handler(event)
            self.plugins.event_consumed(event, group)

        self.bus.subscribe(group, observed, types=types)

    async def start(self) -> None:
        """See `EventBus.start`."""
        await self.bus.start()

    async def stop(self) -> None:
        """See `EventBus.stop`."""
        await self.bus.stop()
