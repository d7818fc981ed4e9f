"""How often and how long a sender retries: exponential backoff with jitter, Retry-After."""

from __future__ import annotations

import datetime as dt
import email.utils
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from commercekit._lazy import lazy_attributes
from commercekit.errors import ConfigurationError

__all__ = ["SendRetry", "parse_retry_after"]


@dataclass(frozen=True, slots=True)
class SendRetry:
    """Bounded retries of a transient failure (HTTP 429, 5xx, a lost connection).

    The wait before retry *n* is ``base_delay * 2**(n-1)``, capped at
    `max_delay`, then scaled by a random factor in [0.5, 1) so that many
    clients do not retry in step. A ``Retry-After`` from the server is
    honoured (up to `max_retry_after`) when it asks for longer.

    (An event handler's retries are `commercekit.events.EventRetry`.) This
    policy was called ``RetryPolicy`` before; that name still works for a
    release, with a `DeprecationWarning`.

    Attributes:
        attempts: requests in total, the first one included (1 = no retry).
        base_delay: seconds before the first retry, before jitter.
        max_delay: the longest backoff, in seconds.
        max_retry_after: the longest ``Retry-After`` obeyed, in seconds.
        jitter: randomise the backoff (turn off for deterministic tests).
    """

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base_delay < 0 or self.max_delay < 0:
            raise ConfigurationError("attempts must be >= 1 and delays >= 0")

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        backoff = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        if self.jitter:
            backoff *= 0.5 + random.random() / 2  # noqa: S311 - jitter, not cryptography
        if retry_after is not None:
            return max(backoff, min(max(retry_after, 0.0), self.max_retry_after))
        return backoff


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max((when - (now or dt.datetime.now(dt.UTC))).total_seconds(), 0.0)


__getattr__ = lazy_attributes(__name__, renamed={"RetryPolicy": "SendRetry"})

if TYPE_CHECKING:
    RetryPolicy = SendRetry  # deprecated: the old name of SendRetry
