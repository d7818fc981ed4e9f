"""Events a handler is not ready for yet (`NotReadyYet`): parked per partition, then retried.

Each bus keeps one `Deferrals` per subscription. A partition whose next
event was deferred is *parked*: the bus stops reading it (the other
partitions go on), and delivers the event again once its pause is over,
with growing pauses (`EventRetry.backoff`). An event still not ready when
its bound has passed is given up: the bus dead-letters it with the reason.
The bound runs from the first time this process deferred the event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from commercekit.errors import ConfigurationError
from commercekit.events._dispatch import Delivery
from commercekit.events.bus import EventRetry

__all__ = ["Deferrals", "Parked"]

log = logging.getLogger("commercekit.events")

Slot = TypeVar("Slot", bound=Hashable)

_MIN_PAUSE = 0.01
"""Seconds between two deliveries of a parked event, at least (a zero backoff would spin)."""
_MAX_DOUBLINGS = 64
"""The backoff's exponent stops growing here (it has reached `max_backoff` long before)."""


@dataclass
class Parked:
    """The event a partition waits on."""

    offset: int
    since: float
    deadline: float
    tries: int = 0
    due: float = 0.0
    paused: bool = True
    expired: bool = False
    """Its bound has passed: give it up (dead-letter it)."""

    def given_up(self, reason: str, now: float) -> str:
        """The dead-letter reason of an expired event."""
        waited, bound = now - self.since, self.deadline - self.since
        return f"not ready after waiting {waited:.1f} s (bound {bound:g} s): {reason}"[:1000]


class Deferrals(Generic[Slot]):
    """The parked partitions of one subscription (a slot is a partition).

    Args:
        retry: gives the pauses between two deliveries of a parked event.
        wait: the bound of events whose `NotReadyYet` names none, in seconds.
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        retry: EventRetry,
        wait: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if wait < 0:
            raise ConfigurationError("the wait for a not-ready event must be >= 0 seconds")
        self.retry = retry
        self.wait = wait
        self.clock = clock
        self._parked: dict[Slot, Parked] = {}

    def __len__(self) -> int:
        """How many partitions wait on an event."""
        return len(self._parked)

    def defer(self, slot: Slot, offset: int, delivery: Delivery, what: str) -> Parked:
        """Park the event at `offset` of `slot`, or give it up if its bound has passed.

        `what` names the event in the log lines. The result is `expired`
        when the event is given up (dead-letter it with `Parked.given_up`).
        """
        now = self.clock()
        parked = self._parked.get(slot)
        if parked is None or parked.offset != offset:
            wait = self.wait if delivery.wait is None else max(delivery.wait, 0.0)
            parked = Parked(offset, since=now, deadline=now + wait)
            log.info("%s: not ready (%s); waiting up to %.1f s", what, delivery.reason, wait)
        if now >= parked.deadline:
            self._parked.pop(slot, None)
            parked.expired = True
            log.warning("%s: still not ready after %.1f s; giving up", what, now - parked.since)
            return parked
        parked.tries += 1
        pause = max(self.retry.backoff(min(parked.tries, _MAX_DOUBLINGS)), _MIN_PAUSE)
        parked.due = min(now + pause, parked.deadline)
        parked.paused = True
        self._parked[slot] = parked
        return parked

    def settled(self, slot: Slot, offset: int) -> None:
        """The event at `offset` of `slot` was handled or dead-lettered: the partition moves on."""
        parked = self._parked.get(slot)
        if parked is not None and parked.offset <= offset:
            del self._parked[slot]

    def waiting(self, slot: Slot) -> bool:
        """Whether `slot` is parked and its event's pause is not over."""
        parked = self._parked.get(slot)
        return parked is not None and parked.paused and parked.due > self.clock()

    def due(self) -> list[Slot]:
        """The parked slots whose pause is over (each returned once per pause)."""
        now = self.clock()
        ready = [s for s, p in self._parked.items() if p.paused and p.due <= now]
        for slot in ready:
            self._parked[slot].paused = False
        return ready

    def next_due(self) -> float | None:
        """Seconds until the next pause ends (0 if one has), None if nothing is parked."""
        pending = [p.due for p in self._parked.values() if p.paused]
        return max(min(pending) - self.clock(), 0.0) if pending else None

    def keep_only(self, slots: set[Slot]) -> None:
        """Forget the slots not in `slots`; deliver the others' events again at once.

        After a rebalance the consumer reads each partition it kept from the
        committed offset, unpaused: the parked event comes first, and keeps
        the time it was first deferred.
        """
        for slot in list(self._parked):
            if slot not in slots:
                del self._parked[slot]
            else:
                self._parked[slot].due = self.clock()
                self._parked[slot].paused = True
