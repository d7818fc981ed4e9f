"""What the fault tests share: a stack on servers of its own, shoppers, and the books.

The fault tests stop, flush, restart and kill things, so they never touch
the session's servers: `fault_stack` starts its own PostgreSQL, Redis and
Kafka (each on a port chosen once, so a restart keeps the address the
services know) and the whole reference app on them, inventory and worker as
two replicas each, like the e2e stack.

`Books` reads the invariants the way an operator would, straight from the
fault stack's Redis and PostgreSQL with commercekit's own classes, without
ever writing: a read that finds Redis emptied raises, it does not restore.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from redis.asyncio import Redis
from reference_app.launch import SERVICES, LocalStack, ServiceSpec, UvicornServer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from commercekit.errors import BackendUnavailable, RedisDataLost, ReservationNotFound
from commercekit.reservations import (
    DurableReservations,
    RedisReservationStore,
    Reservation,
    ReservationLedger,
    StockLevel,
)
from commercekit.reservations.ledger import ReservationRow
from commercekit.testing.pytest_plugin import unavailable
from commercekit.testing.servers import (
    KafkaServer,
    NginxServer,
    PostgresServer,
    RedisServer,
    Server,
    ServerNotAvailable,
    ServerStartError,
    free_port,
)
from tests.e2e.gateway import loopback_address

T = TypeVar("T")

ADMIN_EMAIL = "fault-admin@example.com"
PASSWORD = "correct horse battery staple"
RESERVATION_TTL_SECONDS = 90
"""Longer than any outage here, so a payment settles before its hold's deadline.

Holds that must expire during a test are made with a short TTL through
commercekit (`Books.durable`), on the same servers the stack uses.
"""
REPLICAS = {"inventory": 2, "worker": 2}
SETTLE_WITHIN = 90.0
"""Seconds for the stack to settle after a fault (Kafka's consumers rejoin their groups)."""
DEPENDENCIES = {
    "user": ("postgres",),
    "inventory": ("kafka", "postgres", "redis"),
    "payment": ("kafka", "postgres", "redis"),  # it pins holds as it accepts a charge
    "email": ("kafka", "postgres"),
    "worker": ("kafka", "postgres", "redis"),
}
"""The readiness checks each service's /ready runs."""


# ------------------------------------------------------------------- polling
async def eventually(
    check: Callable[[], Awaitable[T | None]],
    what: str,
    *,
    within: float = SETTLE_WITHIN,
    every: float = 0.25,
) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` (and its last error)."""
    deadline = time.monotonic() + within
    last: BaseException | None = None
    while True:
        try:
            value = await check()
        except (AssertionError, httpx.HTTPError, BackendUnavailable, RedisDataLost) as exc:
            value, last = None, exc
        else:
            last = None
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f" (last: {last!r})" if last is not None else ""
            pytest.fail(f"timed out after {within:.0f}s waiting for {what}{detail}")
        await asyncio.sleep(every)


async def settled(check: Callable[[], Awaitable[None]], what: str, within: float) -> None:
    """Poll an asserting `check` until it passes; fail with its last assertion."""
    deadline = time.monotonic() + within
    while True:
        try:
            await check()
        except (AssertionError, httpx.HTTPError, BackendUnavailable, RedisDataLost) as exc:
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {within:.0f}s waiting for {what}: {exc}")
            await asyncio.sleep(0.25)
        else:
            return


# --------------------------------------------------------------------- stack
@dataclass
class FaultStack:
    """The reference app on servers of its own."""

    workdir: Path
    redis: RedisServer
    postgres: PostgresServer
    kafka: KafkaServer
    app: LocalStack

    @property
    def gateway_url(self) -> str:
        """The gateway of this stack."""
        return self.app.gateway_url

    def processes(self, service: str) -> list[UvicornServer]:
        """A service's replicas."""
        return self.app.processes[service]

    def logs(self, service: str) -> list[dict[str, Any]]:
        """Every JSON log record of every replica of `service` (restarts append)."""
        records = []
        for process in self.processes(service):
            for line in process.log_path.read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    with contextlib.suppress(ValueError):
                        records.append(json.loads(line))
        return records

    async def metric(
        self, service: str, sample: str, *, missing: float | None = None
    ) -> list[float]:
        """A Prometheus sample of each replica of `service`.

        `sample` is the name with its labels as exposed: ``name{label="value"}``.
        A replica without it fails the test, unless `missing` gives its value
        (a labelled counter appears only once counted).
        """
        values = []
        async with httpx.AsyncClient(timeout=5) as http:
            for url in self.app.urls(service):
                text = (await http.get(url + "/metrics")).text
                match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
                assert match is not None or missing is not None, f"{service}: no {sample}"
                values.append(float(match.group(1)) if match else float(missing or 0))
        return values

    async def readiness(self) -> dict[str, list[tuple[int, dict[str, Any]]]]:
        """Each replica's /ready answer: status code and JSON body, by service."""
        found: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        async with httpx.AsyncClient(timeout=10) as http:
            for spec in self.app.services:
                answers = []
                for url in self.app.urls(spec.name):
                    ready = await http.get(url + "/ready")
                    answers.append((ready.status_code, ready.json()))
                found[spec.name] = answers
        return found


@contextlib.contextmanager
def fault_stack(workdir: Path) -> Iterator[FaultStack]:
    """Start PostgreSQL, Redis, Kafka and the reference app on them; stop it all at the end.

    Each server gets its port here, so the harness treats it as chosen: a
    restart reuses it (or fails), it never moves to another one. Redis runs
    without persistence, so a restart brings it back empty; PostgreSQL and
    Kafka keep their data folders across restarts.
    """
    reason = NginxServer.missing()
    if reason is not None:
        unavailable(reason)
    redis = RedisServer(workdir / "redis", port=free_port())
    postgres = PostgresServer(workdir / "postgres", port=free_port())
    kafka = KafkaServer(workdir / "kafka", port=free_port())
    servers: list[Server] = [redis, postgres, kafka]
    try:
        for server in servers:
            try:
                _start(server)
            except ServerNotAvailable as exc:
                unavailable(str(exc))
        env = {
            "ENVIRONMENT": "production",
            "JWT_ACCESS_SECRET": secrets.token_urlsafe(48),
            "ADMIN_EMAILS": ADMIN_EMAIL,
            "DATABASE_URL": postgres.url,
            "REDIS_URL": redis.url,
            "KAFKA_BROKER": kafka.bootstrap_servers,
            "LOG_LEVEL": "INFO",
            "RESERVATION_TTL_SECONDS": str(RESERVATION_TTL_SECONDS),
            "SWEEP_INTERVAL_SECONDS": "0.5",
            "RECONCILE_INTERVAL_SECONDS": "3",
            "REFUND_RETRY_SECONDS": "2",
            "OUTBOX_POLL_SECONDS": "0.2",
            "PAYMENT_REDRIVE_AFTER_SECONDS": "8",
            "PAYMENT_REDRIVE_INTERVAL_SECONDS": "1",
        }
        services = [
            ServiceSpec(s.name, s.factory, s.placeholder, REPLICAS.get(s.name, 1)) for s in SERVICES
        ]
        with LocalStack(workdir / "app", env=env, services=services) as app:
            yield FaultStack(workdir, redis, postgres, kafka, app)
    finally:
        for server in reversed(servers):
            server.stop()


def _start(server: Server) -> None:
    """Start a server; once more if Kafka's storage format drew a cluster id the CLI refuses.

    KafkaServer draws a random base64 cluster id, and one in 64 starts with "-",
    which ``kafka-storage format --cluster-id`` takes for an option (reported;
    the second draw is a new id).
    """
    try:
        server.start()
    except ServerStartError as exc:
        if "storage format failed" not in str(exc):
            raise
        server.start()


# ------------------------------------------------------------------ shoppers
@dataclass
class Shopper:
    """A signed-in user of the gateway, with a client of its own."""

    http: httpx.AsyncClient
    id: str
    email: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        """The bearer header."""
        return {"Authorization": f"Bearer {self.token}"}

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        """GET with the token."""
        return await self.http.get(path, headers={**self.auth, **kwargs.pop("headers", {})})

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        """POST with the token."""
        headers = {**self.auth, **kwargs.pop("headers", {})}
        return await self.http.post(path, headers=headers, **kwargs)

    async def reserve(
        self, product_id: str, quantity: int = 1, *, key: str | None = None
    ) -> httpx.Response:
        """POST /inventory/reserve (with an Idempotency-Key if given)."""
        headers = {"Idempotency-Key": key} if key else {}
        body = {"productId": product_id, "quantity": quantity}
        return await self.post("/api/v1/inventory/reserve", json=body, headers=headers)

    async def pay(
        self, reservation_id: str, amount: str, method: str = "tok_success"
    ) -> httpx.Response:
        """POST /payment, keyed by the reservation so a retry is never a second charge."""
        body = {"reservationId": reservation_id, "amount": amount, "paymentMethod": method}
        key = {"Idempotency-Key": f"pay-{reservation_id}"}
        return await self.post("/api/v1/payment", json=body, headers=key)

    async def cancel(self, reservation_id: str) -> httpx.Response:
        """Cancel one of the shopper's reservations."""
        return await self.post(f"/api/v1/inventory/reservations/{reservation_id}/cancel")

    async def reservation(self, reservation_id: str) -> httpx.Response:
        """GET one of the shopper's reservations."""
        return await self.get(f"/api/v1/inventory/reservations/{reservation_id}")

    async def payment(self, reservation_id: str) -> httpx.Response:
        """GET a reservation's payment and refunds."""
        return await self.get(f"/api/v1/payment/{reservation_id}")


class Shoppers:
    """Signs shoppers in through a stack's gateway and closes their clients at the end."""

    def __init__(self, stack: FaultStack) -> None:
        self.stack = stack
        self._clients = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Shoppers:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._clients.aclose()

    def client(self, *, timeout: float = 30) -> httpx.AsyncClient:
        """A gateway client from its own loopback address (its own rate-limit bucket)."""
        transport = httpx.AsyncHTTPTransport(local_address=loopback_address())
        limits = httpx.Limits(max_connections=50, max_keepalive_connections=50)
        client = httpx.AsyncClient(
            base_url=self.stack.gateway_url, transport=transport, timeout=timeout, limits=limits
        )
        self._clients.push_async_callback(client.aclose)
        return client

    async def sign_in(self, email: str | None = None) -> Shopper:
        """Sign up (if new) and log in."""
        http = self.client()
        name = f"f{uuid.uuid4().hex[:12]}"
        email = email or f"{name}@example.com"
        body = {"username": name, "email": email, "password": PASSWORD}
        signup = await http.post("/api/v1/auth/signup", json=body)
        assert signup.status_code in (201, 409), signup.text
        login = await http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        user = login.json()
        return Shopper(http, user["user"]["id"], email, user["accessToken"])

    async def many(self, count: int) -> list[Shopper]:
        """`count` new shoppers, signed in a few at a time."""
        gate = asyncio.Semaphore(4)

        async def one() -> Shopper:
            async with gate:
                return await self.sign_in()

        return list(await asyncio.gather(*(one() for _ in range(count))))

    async def product(self, admin: Shopper, *, stock: int, price: str = "5.00") -> dict[str, Any]:
        """A new product (created by `admin`)."""
        sku = f"FAULT-{uuid.uuid4().hex[:10]}"
        body = {"sku": sku, "name": "Fuse", "price": price, "stock": stock}
        answer = await admin.post("/api/v1/inventory", json=body)
        assert answer.status_code == 201, answer.text
        product: dict[str, Any] = answer.json()
        return product


def mails(stack: FaultStack) -> dict[str, list[str]]:
    """Every mail the email service logged as sent: recipient -> event types, sorted."""
    sent: dict[str, list[str]] = {}
    for record in stack.logs("email"):
        if record.get("message") == "email sent":
            sent.setdefault(str(record.get("to")), []).append(str(record.get("type")))
    return {to: sorted(types) for to, types in sent.items()}


def mails_to(sent: dict[str, list[str]], email: str) -> list[str]:
    """The event types mailed to `email` (the log's ``to`` may be a list)."""
    return sorted(t for to, types in sent.items() if email in to for t in types)


# --------------------------------------------------------------------- books
@dataclass
class SkuBooks:
    """One SKU as Redis and the ledger have it."""

    sku: str
    redis: StockLevel
    added: int
    sold: int
    redis_pending: dict[str, Reservation] = field(default_factory=dict)
    ledger_pending: dict[str, Reservation] = field(default_factory=dict)

    @property
    def ledger_held(self) -> int:
        """Units of the ledger's PENDING reservations of this SKU."""
        return _units(self.sku, self.ledger_pending.values())

    def assert_conserved(self) -> None:
        """available + held + sold == stock added, in Redis and in the ledger, holds alike."""
        level = self.redis
        assert level.available + level.held + level.sold == self.added, (
            f"{self.sku}: redis {level} does not add up to {self.added} added"
        )
        assert level.sold == self.sold, f"{self.sku}: redis sold {level.sold}, ledger {self.sold}"
        assert set(self.redis_pending) == set(self.ledger_pending), (
            f"{self.sku}: pending holds differ: redis only "
            f"{sorted(set(self.redis_pending) - set(self.ledger_pending))}, ledger only "
            f"{sorted(set(self.ledger_pending) - set(self.redis_pending))}"
        )
        assert level.held == self.ledger_held == _units(self.sku, self.redis_pending.values()), (
            f"{self.sku}: held {level.held} in redis, {self.ledger_held} in the ledger"
        )
        assert self.added - self.sold - self.ledger_held == level.available


def _units(sku: str, reservations: Iterable[Reservation]) -> int:
    return sum(line.quantity for r in reservations for line in r.lines if line.sku == sku)


class Books:
    """Read-only views of the fault stack's Redis and ledger, through commercekit."""

    def __init__(self, stack: FaultStack) -> None:
        self.stack = stack
        self.engine: AsyncEngine = create_async_engine(stack.postgres.async_url, pool_pre_ping=True)
        self.redis = Redis.from_url(stack.redis.url, socket_timeout=5, socket_connect_timeout=2)
        # guarded: a read of an emptied Redis raises RedisDataLost instead of reading zeros
        self.store = RedisReservationStore(self.redis, guarded=True)
        self.ledger = ReservationLedger(self.engine)

    async def __aenter__(self) -> Books:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.redis.aclose()
        await self.engine.dispose()

    def durable(self) -> DurableReservations:
        """Reservations as the services make them (for holds with a short TTL)."""
        store = RedisReservationStore(self.redis, guarded=True, pipeline=True)
        return DurableReservations(store, self.ledger, batch_records=True)

    async def of(self, sku: str) -> SkuBooks:
        """The SKU's stock and pending holds, in Redis and in the ledger."""
        level = await self.store.stock(sku)
        added, sold = await self.ledger.totals_of(sku)
        redis_pending = {
            r.id: r for r in await self.store.pending() if any(x.sku == sku for x in r.lines)
        }
        ledger_pending = {
            r.id: r for r in await self.ledger.pending() if any(x.sku == sku for x in r.lines)
        }
        return SkuBooks(sku, level, added, sold, redis_pending, ledger_pending)

    async def conserved(self, sku: str, within: float = SETTLE_WITHIN) -> SkuBooks:
        """Wait for a quiescent point where the SKU's books balance; return them."""
        books: list[SkuBooks] = []

        async def check() -> None:
            books[:] = [await self.of(sku)]
            books[0].assert_conserved()

        await settled(check, f"{sku} to balance in Redis and the ledger", within)
        return books[0]

    async def statuses(self, ids: Sequence[str]) -> dict[str, tuple[str | None, str | None]]:
        """Per reservation: (status in Redis, status in the ledger); None where unknown."""
        found: dict[str, tuple[str | None, str | None]] = {}
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(ReservationRow.id, ReservationRow.status).where(
                    ReservationRow.id.in_(list(ids))
                )
            )
            in_ledger: dict[str, str] = {str(rid): str(status) for rid, status in rows.all()}
        for rid in ids:
            try:
                in_redis: str | None = (await self.store.get(rid)).status.value
            except ReservationNotFound:
                in_redis = None
            found[rid] = (in_redis, in_ledger.get(rid))
        return found

    async def ledger_ids(self, sku: str) -> dict[str, str]:
        """Every reservation of `sku` the ledger has, with its status."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(ReservationRow.id, ReservationRow.status, ReservationRow.lines)
            )
            return {
                rid: status for rid, status, lines in rows if any(line[0] == sku for line in lines)
            }


def duplicates(values: Sequence[str]) -> dict[str, int]:
    """The values that occur more than once, with their counts."""
    return {value: n for value, n in Counter(values).items() if n > 1}
