"""The whole stack for the e2e tests: real services behind real nginx.

The inventory service and the worker run as two replicas each, so every
flow also proves they scale out.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pytest
from reference_app.launch import SERVICES, LocalStack, ServiceSpec

from commercekit.testing.pytest_plugin import unavailable
from commercekit.testing.servers import KafkaServer, NginxServer, PostgresServer, RedisServer
from tests.e2e.gateway import gateway_client

ADMIN_EMAIL = "boss@example.com"
SHOPKEEPER_EMAIL = "shopkeeper@example.com"
SHARED_ADMIN_EMAIL = "someone@example.com"
"""The stack's third admin address, shared by the reliability tests: they sign it up
tolerating a 409. The user and shop flows sign the other two up once and expect 201."""
RESERVATION_TTL_SECONDS = 20
REPLICAS = {"inventory": 2, "worker": 2}


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: PostgresServer,
    redis_server: RedisServer,
    kafka_server: KafkaServer,
) -> Iterator[LocalStack]:
    """Every service and the gateway, in production mode, on the session's servers."""
    reason = NginxServer.missing()
    if reason is not None:
        unavailable(reason)
    env = {
        "ENVIRONMENT": "production",
        "JWT_ACCESS_SECRET": secrets.token_urlsafe(48),
        "ADMIN_EMAILS": f"{SHARED_ADMIN_EMAIL}, {ADMIN_EMAIL.upper()}, {SHOPKEEPER_EMAIL}",
        "DATABASE_URL": postgres_server.url,
        "REDIS_URL": redis_server.url,
        "KAFKA_BROKER": kafka_server.bootstrap_servers,
        "LOG_LEVEL": "INFO",
        "RESERVATION_TTL_SECONDS": str(RESERVATION_TTL_SECONDS),
        "SWEEP_INTERVAL_SECONDS": "1",
        "RECONCILE_INTERVAL_SECONDS": "5",
        "REFUND_RETRY_SECONDS": "2",
        "OUTBOX_POLL_SECONDS": "0.2",
    }
    services = [
        ServiceSpec(s.name, s.factory, s.placeholder, REPLICAS.get(s.name, 1)) for s in SERVICES
    ]
    workdir = tmp_path_factory.mktemp("stack")
    with LocalStack(workdir, env=env, services=services) as running:
        yield running


@pytest.fixture
def client(stack: LocalStack) -> Iterator[httpx.Client]:
    """A client of the gateway from its own loopback address (its own rate-limit bucket)."""
    with gateway_client(stack, timeout=10) as http:
        yield http
