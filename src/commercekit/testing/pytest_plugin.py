"""pytest fixtures that run real servers for the whole test session.

Enable in a ``conftest.py``::

    pytest_plugins = ["commercekit.testing.pytest_plugin"]

Fixtures (session scope, started on first use, stopped at the end):
``redis_server``, ``redis_cluster``, ``postgres_server``, ``kafka_server``, and
``nginx_factory`` (call it with a config file and placeholder values).

A server whose binary is missing skips the tests that need it, saying how to
install it, except when the ``CI`` environment variable is true: there a
missing server fails the test, so a green run always means the real thing ran.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import NoReturn, TypeVar

import pytest

from commercekit.testing.servers import (
    KafkaServer,
    NginxServer,
    PostgresServer,
    RedisClusterServer,
    RedisServer,
    Server,
    ServerNotAvailable,
)

__all__ = [
    "in_ci",
    "kafka_server",
    "nginx_factory",
    "postgres_server",
    "redis_cluster",
    "redis_server",
    "unavailable",
]

S = TypeVar("S", bound=Server)

NginxFactory = Callable[..., NginxServer]


def in_ci() -> bool:
    """Whether the ``CI`` environment variable says this is a CI run."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}


def unavailable(reason: str) -> NoReturn:
    """Skip the current test for a missing server, or fail it under CI."""
    if in_ci():
        pytest.fail(f"CI=true and a required server is missing: {reason}", pytrace=False)
    pytest.skip(reason)


def _started(server: S) -> Iterator[S]:
    try:
        server.start()
    except ServerNotAvailable as exc:
        unavailable(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real Redis 7 for the session (``redis_server.url``)."""
    yield from _started(RedisServer(tmp_path_factory.mktemp("redis")))


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServer]:
    """A real 3-master Redis Cluster for the session (``redis_cluster.url``)."""
    cluster = RedisClusterServer(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
    except ServerNotAvailable as exc:
        unavailable(str(exc))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A real PostgreSQL for the session (``postgres_server.async_url``)."""
    yield from _started(PostgresServer(tmp_path_factory.mktemp("postgres")))


@pytest.fixture(scope="session")
def kafka_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaServer]:
    """A real single-node Kafka (KRaft) for the session (``kafka_server.bootstrap_servers``)."""
    yield from _started(KafkaServer(tmp_path_factory.mktemp("kafka")))


@pytest.fixture(scope="session")
def nginx_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxFactory]:
    """Start nginx with a config file: ``nginx_factory(path, UPSTREAM="127.0.0.1:8000")``."""
    started: list[NginxServer] = []

    def start(config: str | os.PathLike[str], **variables: str) -> NginxServer:
        reason = NginxServer.missing()
        if reason is not None:
            unavailable(reason)
        server = NginxServer(
            tmp_path_factory.mktemp("nginx"), Path(config), variables=_str_values(variables)
        )
        started.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in reversed(started):
            server.stop()


def _str_values(values: Mapping[str, object]) -> dict[str, str]:
    return {key: str(value) for key, value in values.items()}
