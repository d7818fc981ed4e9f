"""Several servers started together, for local development and benchmarks."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Self

from commercekit.errors import ConfigurationError
from commercekit.testing.servers._base import Server
from commercekit.testing.servers.kafka import KafkaServer
from commercekit.testing.servers.postgres import PostgresServer
from commercekit.testing.servers.redis import RedisServer

__all__ = ["SERVICE_NAMES", "ServiceStack"]

SERVICE_NAMES = ("redis", "postgres", "kafka")
"""The services a `ServiceStack` can start, in start order."""


class ServiceStack:
    """Redis, PostgreSQL and Kafka (or a subset) under one folder.

    ``stack.env()`` gives their addresses as environment variables::

        with ServiceStack(workdir, services=["redis", "postgres"]) as stack:
            print(stack.env()["REDIS_URL"])
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        services: Iterable[str] = SERVICE_NAMES,
    ) -> None:
        wanted = list(dict.fromkeys(services))
        unknown = sorted(set(wanted) - set(SERVICE_NAMES))
        if unknown:
            raise ConfigurationError(
                f"unknown service(s) {', '.join(unknown)}; choose from {', '.join(SERVICE_NAMES)}"
            )
        root = Path(workdir)
        self.redis = RedisServer(root / "redis") if "redis" in wanted else None
        self.postgres = PostgresServer(root / "postgres") if "postgres" in wanted else None
        self.kafka = KafkaServer(root / "kafka") if "kafka" in wanted else None

    @property
    def servers(self) -> list[Server]:
        """The servers of this stack, in start order."""
        return [s for s in (self.redis, self.postgres, self.kafka) if s is not None]

    def start(self) -> Self:
        """Start every server; if one fails, stop those already started."""
        try:
            for server in self.servers:
                server.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every server, last started first."""
        for server in reversed(self.servers):
            server.stop()

    def env(self) -> dict[str, str]:
        """The servers' addresses: ``REDIS_URL``, ``DATABASE_URL``, ``KAFKA_BOOTSTRAP_SERVERS``."""
        env: dict[str, str] = {}
        if self.redis is not None:
            env["REDIS_URL"] = self.redis.url
        if self.postgres is not None:
            env["DATABASE_URL"] = self.postgres.async_url
        if self.kafka is not None:
            env["KAFKA_BOOTSTRAP_SERVERS"] = self.kafka.bootstrap_servers
        return env

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
