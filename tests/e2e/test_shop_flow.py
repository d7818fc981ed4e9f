"""The shop's flows through nginx: reserve, pay, fail, expire and refund, with the emails.

Every service runs as its own process on real PostgreSQL, Redis and Kafka;
the inventory service and the worker run two replicas each.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from reference_app.launch import SERVICES, LocalStack

from commercekit.events import TopicNames
from commercekit.testing.servers import KafkaServer
from tests.e2e.conftest import RESERVATION_TTL_SECONDS, SHOPKEEPER_EMAIL
from tests.e2e.gateway import gateway_client

PASSWORD = "correct horse battery staple"
SETTLE_WITHIN = 45.0  # seconds for an outcome to travel outbox -> Kafka -> consumer


@dataclass
class Shopper:
    """A signed-in user of the gateway."""

    http: httpx.Client
    id: str
    email: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, headers={**self.auth, **kwargs.pop("headers", {})}, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.post(path, headers={**self.auth, **kwargs.pop("headers", {})}, **kwargs)

    def reserve(self, product_id: str, quantity: int = 1) -> httpx.Response:
        return self.post(
            "/api/v1/inventory/reserve", json={"productId": product_id, "quantity": quantity}
        )

    def pay(self, reservation_id: str, amount: str, method: str = "tok_success") -> httpx.Response:
        body = {"reservationId": reservation_id, "amount": amount, "paymentMethod": method}
        return self.post("/api/v1/payment", json=body)

    def reservation(self, reservation_id: str) -> dict[str, Any]:
        answer = self.get(f"/api/v1/inventory/reservations/{reservation_id}")
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def payment(self, reservation_id: str) -> httpx.Response:
        return self.get(f"/api/v1/payment/{reservation_id}")


def _sign_in(http: httpx.Client, email: str | None = None) -> Shopper:
    name = f"s{uuid.uuid4().hex[:12]}"
    email = email or f"{name}@example.com"
    signup = http.post(
        "/api/v1/auth/signup", json={"username": name, "email": email, "password": PASSWORD}
    )
    assert signup.status_code == 201, signup.text
    login = http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    body = login.json()
    return Shopper(http, body["user"]["id"], email, body["accessToken"])


@pytest.fixture(scope="module")
def shopkeeper(stack: LocalStack) -> Iterator[Shopper]:
    """The admin who creates the products."""
    with gateway_client(stack) as http:
        yield _sign_in(http, SHOPKEEPER_EMAIL)


@pytest.fixture
def shopper(stack: LocalStack) -> Iterator[Shopper]:
    with gateway_client(stack) as http:
        yield _sign_in(http)


@pytest.fixture
def new_product(shopkeeper: Shopper) -> Callable[..., dict[str, Any]]:
    def create(stock: int = 5, price: str = "12.50") -> dict[str, Any]:
        sku = f"E2E-{uuid.uuid4().hex[:10]}"
        answer = shopkeeper.post(
            "/api/v1/inventory", json={"sku": sku, "name": "Lamp", "price": price, "stock": stock}
        )
        assert answer.status_code == 201, answer.text
        product: dict[str, Any] = answer.json()
        return product

    return create


def eventually(check: Callable[[], Any], what: str, within: float = SETTLE_WITHIN) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def payment_status(shopper: Shopper, reservation_id: str, status: str) -> Callable[[], Any]:
    def check() -> dict[str, Any] | None:
        answer = shopper.payment(reservation_id)
        if answer.status_code == 200 and answer.json()["status"] == status:
            body: dict[str, Any] = answer.json()
            return body
        return None

    return check


def mails_to(stack: LocalStack, email: str) -> list[dict[str, Any]]:
    """The ``email sent`` log lines of every email process for one recipient."""
    found = []
    for process in stack.processes["email"]:
        for line in process.log_path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            record = json.loads(line)
            if record.get("message") == "email sent" and email in str(record.get("to")):
                found.append(record)
    return found


def mail_types(stack: LocalStack, email: str) -> list[str]:
    return sorted(str(m["type"]) for m in mails_to(stack, email))


def stock_of(http: httpx.Client, product_id: str) -> int:
    stock: int = http.get(f"/api/v1/products/{product_id}").json()["stock"]
    return stock


# ------------------------------------------------------------------- flows
def test_happy_path_confirms_and_mails_welcome_and_payment(
    stack: LocalStack, shopper: Shopper, new_product: Callable[..., dict[str, Any]]
) -> None:
    product = new_product(stock=5, price="12.50")
    held = shopper.reserve(product["id"], 2)
    assert held.status_code == 201, held.text
    reservation_id = held.json()["reservationId"]
    assert held.json()["success"] is True
    assert stock_of(shopper.http, product["id"]) == 3

    paying = shopper.pay(reservation_id, "25.00")
    assert paying.status_code == 202, paying.text
    assert paying.json()["status"] == "processing"
    payment = eventually(payment_status(shopper, reservation_id, "confirmed"), "the confirmation")
    assert float(payment["amount"]) == 25.0
    assert payment["refunds"] == []
    assert shopper.reservation(reservation_id)["status"] == "CONFIRMED"
    assert stock_of(shopper.http, product["id"]) == 3  # sold, not back
    # Through the gateway: the paid reservation is the shopper's order, its units committed.
    order = shopper.get(f"/api/v1/orders/{reservation_id}")
    assert order.status_code == 200, order.text
    assert (order.json()["status"], order.json()["items"][0]["committed"]) == ("OPEN", 2)
    assert reservation_id in [o["id"] for o in shopper.get("/api/v1/orders").json()]
    eventually(
        lambda: mail_types(stack, shopper.email) == ["payment.confirmed", "user.created"],
        "the welcome and payment emails",
    )


def test_a_failed_payment_restores_the_stock(
    stack: LocalStack, shopper: Shopper, new_product: Callable[..., dict[str, Any]]
) -> None:
    product = new_product(stock=4, price="3.00")
    reservation_id = shopper.reserve(product["id"], 4).json()["reservationId"]
    assert stock_of(shopper.http, product["id"]) == 0
    assert shopper.pay(reservation_id, "12.00", "tok_declined").status_code == 202
    eventually(payment_status(shopper, reservation_id, "failed"), "the failed payment")
    eventually(lambda: shopper.reservation(reservation_id)["status"] == "RELEASED", "the release")
    assert stock_of(shopper.http, product["id"]) == 4
    eventually(
        lambda: "payment.failed" in mail_types(stack, shopper.email), "the payment-failed email"
    )


def test_zombie_flow_a_late_payment_is_refunded_exactly_once(
    stack: LocalStack, shopper: Shopper, new_product: Callable[..., dict[str, Any]]
) -> None:
    product = new_product(stock=2, price="8.00")
    reservation_id = shopper.reserve(product["id"], 2).json()["reservationId"]
    assert stock_of(shopper.http, product["id"]) == 0
    # The hold expires; the sweeper (a worker) gives the stock back.
    eventually(
        lambda: shopper.reservation(reservation_id)["status"] == "EXPIRED",
        "the sweeper",
        within=RESERVATION_TTL_SECONDS + 20,
    )
    assert stock_of(shopper.http, product["id"]) == 2
    # The late payment, sent twice with one key: one charge, one refund.
    key = {"Idempotency-Key": f"late-{reservation_id}"}
    body = {"reservationId": reservation_id, "amount": "16.00", "paymentMethod": "tok_success"}
    first = shopper.post("/api/v1/payment", json=body, headers=key)
    again = shopper.post("/api/v1/payment", json=body, headers=key)
    assert first.status_code == again.status_code == 202
    refunded = eventually(payment_status(shopper, reservation_id, "refunded"), "the refund")
    [refund] = refunded["refunds"]
    assert float(refund["amount"]) == 16.0
    assert refund["reason"] == "LATE_PAYMENT"
    eventually(lambda: "refund.completed" in mail_types(stack, shopper.email), "the refund email")
    time.sleep(2)  # room for a duplicate to show up, if there were one
    assert len(shopper.payment(reservation_id).json()["refunds"]) == 1
    assert mail_types(stack, shopper.email).count("refund.completed") == 1
    assert shopper.reservation(reservation_id)["status"] == "EXPIRED"
    assert stock_of(shopper.http, product["id"]) == 2


async def test_500_concurrent_reserves_on_50_units_hold_exactly_50(
    stack: LocalStack, shopper: Shopper, new_product: Callable[..., dict[str, Any]]
) -> None:
    product = new_product(stock=50, price="1.00")
    body = {"productId": product["id"], "quantity": 1}
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(
        base_url=stack.gateway_url, headers=shopper.auth, limits=limits, timeout=60
    ) as http:
        started = time.monotonic()
        answers = await asyncio.gather(
            *(http.post("/api/v1/inventory/reserve", json=body) for _ in range(500))
        )
        took = time.monotonic() - started
        # nginx spread the burst over both inventory replicas.
        for url in stack.urls("inventory"):
            metrics = (await http.get(url + "/metrics")).text
            assert 'refapp_inventory_reservations_total{outcome="out_of_stock"}' in metrics
    # Holds expire after RESERVATION_TTL_SECONDS, and then their units may be held again.
    assert took < RESERVATION_TTL_SECONDS, f"the burst took {took:.1f} s: inconclusive"
    codes = sorted(a.status_code for a in answers)
    assert codes == [201] * 50 + [409] * 450
    held = {a.json()["reservationId"] for a in answers if a.status_code == 201}
    assert len(held) == 50
    assert stock_of(shopper.http, product["id"]) == 0


def test_a_non_admin_cannot_create_or_restock_products(
    shopper: Shopper, new_product: Callable[..., dict[str, Any]]
) -> None:
    body = {"sku": f"NOPE-{uuid.uuid4().hex[:6]}", "name": "x", "price": "1.00", "stock": 1}
    denied = shopper.post("/api/v1/inventory", json=body)
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "forbidden"
    product = new_product(stock=1)
    restock = shopper.post(f"/api/v1/inventory/{product['id']}/restock", json={"quantity": 5})
    assert restock.status_code == 403
    assert stock_of(shopper.http, product["id"]) == 1


def test_another_users_reservation_cannot_be_read_paid_or_cancelled(
    stack: LocalStack, shopper: Shopper, new_product: Callable[..., dict[str, Any]]
) -> None:
    product = new_product(stock=3, price="2.00")
    reservation_id = shopper.reserve(product["id"], 1).json()["reservationId"]
    with gateway_client(stack) as http:
        mallory = _sign_in(http)
        assert mallory.get(f"/api/v1/inventory/reservations/{reservation_id}").status_code == 404
        cancel = mallory.post(f"/api/v1/inventory/reservations/{reservation_id}/cancel")
        assert cancel.status_code == 404
        assert mallory.pay(reservation_id, "2.00").status_code == 404
        assert mallory.payment(reservation_id).status_code == 404
    assert shopper.reservation(reservation_id)["status"] == "PENDING"
    assert shopper.payment(reservation_id).status_code == 404  # nobody paid


def test_a_client_sent_user_id_is_ignored(
    shopper: Shopper, shopkeeper: Shopper, new_product: Callable[..., dict[str, Any]]
) -> None:
    product = new_product(stock=2)
    reservation_id = shopper.reserve(product["id"], 1).json()["reservationId"]
    forged = {"X-User-Id": shopper.id, "X-User-Role": "admin"}
    # Without a token the gateway stops it; with another user's token the header loses.
    no_token = shopper.http.get(f"/api/v1/inventory/reservations/{reservation_id}", headers=forged)
    assert no_token.status_code == 401
    with httpx.Client(base_url=str(shopper.http.base_url), timeout=30) as http:
        other = _sign_in(http)
        as_other = other.get(f"/api/v1/inventory/reservations/{reservation_id}", headers=forged)
        assert as_other.status_code == 404
        create = other.post(
            "/api/v1/inventory",
            json={"sku": "FORGED-1", "name": "x", "price": "1.00", "stock": 1},
            headers=forged,
        )
        assert create.status_code == 403


def test_cancel_gives_the_units_back_once(
    shopper: Shopper, new_product: Callable[..., dict[str, Any]]
) -> None:
    product = new_product(stock=3)
    reservation_id = shopper.reserve(product["id"], 3).json()["reservationId"]
    cancel = shopper.post(f"/api/v1/inventory/reservations/{reservation_id}/cancel")
    assert cancel.status_code == 200
    assert cancel.json()["status"] == "RELEASED"
    assert (
        shopper.post(f"/api/v1/inventory/reservations/{reservation_id}/cancel").status_code == 409
    )
    assert stock_of(shopper.http, product["id"]) == 3


def test_a_cancelled_unit_of_an_order_is_refunded_once_and_mailed(
    stack: LocalStack,
    shopper: Shopper,
    shopkeeper: Shopper,
    new_product: Callable[..., dict[str, Any]],
) -> None:
    product = new_product(stock=3, price="8.00")
    reservation_id = shopper.reserve(product["id"], 3).json()["reservationId"]
    assert shopper.pay(reservation_id, "24.00").status_code == 202
    eventually(payment_status(shopper, reservation_id, "confirmed"), "the confirmation")
    cancel = f"/api/v1/orders/{reservation_id}/cancellations"
    one = {"cancellationId": "e2e-1", "items": [{"productId": product["id"], "quantity": 1}]}
    made = shopkeeper.post(cancel, json=one)
    assert made.status_code == 201, made.text
    assert made.json()["refunded"] == "8.00"
    assert shopkeeper.post(cancel, json=one).json() == made.json()  # a retry: refunded once

    def refund_completed() -> dict[str, Any] | None:
        shown: dict[str, Any] = shopper.payment(reservation_id).json()
        done = [r for r in shown["refunds"] if r["status"] == "completed"]
        return shown if done else None

    # The inventory service requested it; the payment service made it, over Kafka.
    shown = eventually(refund_completed, "the payment service to make the refund")
    assert [(r["id"], r["amount"], r["reason"]) for r in shown["refunds"]] == [
        (made.json()["refundId"], "8.00", "ORDER_CANCELLED")
    ]
    assert shown["status"] == "confirmed"  # 8.00 of 24.00 given back: still paid
    assert stock_of(shopper.http, product["id"]) == 1  # the cancelled unit is on sale again
    eventually(lambda: "refund.completed" in mail_types(stack, shopper.email), "the refund email")


async def _stock_events(bootstrap: str, sku: str, expected: int) -> list[tuple[str, int]]:
    """``(type, available)`` of the ``stock.*`` events of `sku` on Kafka, once `expected` came."""
    consumer = AIOKafkaConsumer(
        TopicNames().topic("stock"),
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[tuple[str, int]] = []
    try:
        deadline = time.monotonic() + SETTLE_WITHIN
        while len(found) < expected and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    if record.key == sku.encode():
                        event = json.loads(record.value)
                        found.append((event["type"], event["data"]["available"]))
        await asyncio.sleep(1.0)  # and nothing more: each row is announced once
        for records in (await consumer.getmany(timeout_ms=500)).values():
            found.extend(
                (json.loads(r.value)["type"], -1) for r in records if r.key == sku.encode()
            )
    finally:
        await consumer.stop()
    return found


async def test_a_low_and_an_out_of_stock_product_are_announced_once_on_kafka(
    kafka_server: KafkaServer,
    shopper: Shopper,
    shopkeeper: Shopper,
    new_product: Callable[..., dict[str, Any]],
) -> None:
    product = new_product(stock=5)
    alert = shopkeeper.http.put(
        f"/api/v1/inventory/{product['id']}/alert", json={"low": 2}, headers=shopkeeper.auth
    )
    assert (alert.status_code, alert.json()["low"]) == (200, 2), alert.text
    denied = shopper.http.put(
        f"/api/v1/inventory/{product['id']}/alert", json={"low": 2}, headers=shopper.auth
    )
    assert denied.status_code == 403
    assert shopper.reserve(product["id"], 3).status_code == 201  # 2 left: low
    assert shopper.reserve(product["id"], 2).status_code == 201  # 0 left: out
    # Two workers run the stock watch; the events go out once, in order.
    events = await _stock_events(kafka_server.bootstrap_servers, product["sku"], expected=3)
    assert events == [("stock.adjusted", 5), ("stock.low", 2), ("stock.out", 0)]


def test_every_service_is_ready_and_scaled_out(stack: LocalStack) -> None:
    assert len(stack.urls("inventory")) == 2
    assert len(stack.urls("worker")) == 2
    for spec in SERVICES:
        for url in stack.urls(spec.name):
            ready = httpx.get(url + "/ready", timeout=10)
            assert ready.status_code == 200, (spec.name, ready.text)
    metrics = httpx.get(stack.urls("worker")[0] + "/metrics", timeout=10).text
    assert "refapp_worker_outbox_backlog" in metrics
