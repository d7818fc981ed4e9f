"""Backoff delays: exponential, capped, jittered, and Retry-After honoured."""

from __future__ import annotations

import datetime as dt
import email.utils

import pytest

from commercekit.email import SendRetry, parse_retry_after
from commercekit.errors import ConfigurationError


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = SendRetry(base_delay=0.5, max_delay=3.0, jitter=False)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_jitter_stays_within_half_and_full_backoff() -> None:
    policy = SendRetry(base_delay=1.0, max_delay=60.0)
    delays = [policy.delay(3) for _ in range(200)]
    assert all(2.0 <= d < 4.0 for d in delays)
    assert len(set(delays)) > 1


def test_retry_after_is_honoured_up_to_a_limit() -> None:
    policy = SendRetry(base_delay=0.5, max_retry_after=10.0, jitter=False)
    assert policy.delay(1, retry_after=4.0) == 4.0
    assert policy.delay(1, retry_after=3600.0) == 10.0
    assert policy.delay(3, retry_after=0.0) == 2.0  # the backoff when it asks for less


def test_retry_after_parses_seconds_and_http_dates() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    later = email.utils.format_datetime(now + dt.timedelta(seconds=30), usegmt=True)
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(later, now=now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_a_policy_needs_at_least_one_attempt() -> None:
    with pytest.raises(ConfigurationError):
        SendRetry(attempts=0)
