"""The user service's metrics: how busy its password checks are."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from commercekit.auth import PasswordHashingPool

__all__ = ["PasswordCheckMetrics"]


class PasswordCheckMetrics(Collector):
    """``refapp_password_checks_running``, ``_waiting`` and ``_refused_total``, read at scrape.

    Refusals (logins and signups answered 503 because every slot and the
    queue were taken) climbing while the token check stays fast is the pool
    doing its job; raise ``PASSWORD_HASH_QUEUE`` or add replicas if they are
    the norm rather than a flood's exception.
    """

    def __init__(self, pool: PasswordHashingPool) -> None:
        self.pool = pool

    def collect(self) -> Iterator[Metric]:
        """The pool's counts now."""
        yield GaugeMetricFamily(
            "refapp_password_checks_running",
            "Password checks running now (at most PASSWORD_HASH_CONCURRENCY).",
            value=self.pool.running,
        )
        yield GaugeMetricFamily(
            "refapp_password_checks_waiting",
            "Logins and signups waiting for a password-check thread (at most PASSWORD_HASH_QUEUE).",
            value=self.pool.waiting,
        )
        yield CounterMetricFamily(
            "refapp_password_checks_refused",
            "Logins and signups refused with 503 because the password checks were full.",
            value=self.pool.refused,
        )
