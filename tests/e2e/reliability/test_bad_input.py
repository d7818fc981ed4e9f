"""Bad input: fuzzed requests, malformed bodies, absurd numbers, garbage on Kafka.

Each service process is fuzzed with schemathesis from its own OpenAPI
document (called directly, with the identity headers the gateway would
add); the hand-written cases go through nginx like a real client; the
Kafka cases publish garbage to the topics the stack consumes and then run
a real flow that needs every consumer group to have gone past it.

tests/e2e/test_user_flow.py already proves the user service's malformed
JSON, wrong types and form bodies (`test_bad_input_is_a_json_4xx_never_a_5xx`);
these tests cover the inventory and payment services and Kafka.
"""

from __future__ import annotations

import itertools
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
import schemathesis.checks
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from reference_app.launch import LocalStack
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok

from commercekit.events import DeadLetter, TopicNames
from commercekit.testing.servers import KafkaServer
from tests.e2e.conftest import SHARED_ADMIN_EMAIL
from tests.e2e.gateway import assert_json_error, gateway_client
from tests.e2e.reliability.conftest import Tried
from tests.e2e.test_shop_flow import (
    PASSWORD,
    Shopper,
    eventually,
    mail_types,
    payment_status,
    stock_of,
)

ADMIN = SHARED_ADMIN_EMAIL

FUZZ_EXAMPLES = int(os.environ.get("RELIABILITY_FUZZ_EXAMPLES", "8"))
"""Generated requests per operation and mode; raise it for a deeper, randomised sweep."""

FUZZ_CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.negative_data_rejection,
]
"""What every fuzzed answer must satisfy: no 5xx, the documented shape, invalid data refused.

Not checked (see docs/reliability.md): ``status_code_conformance`` (the
services answer 400/401/403/404 that their OpenAPI does not list) and
``positive_data_acceptance`` (the documents accept a little more than the
models do).
"""

# The stack's consumer groups on each topic: each dead-letters a message it cannot read.
GROUPS_BY_TOPIC = {"payments": {"inventory", "email"}, "refunds": {"payment", "email"}}
GROUPS_BY_TOPIC["users"] = {"email"}

JSON = {"Content-Type": "application/json"}


# ------------------------------------------------------------------ helpers
def _sign_in(http: httpx.Client, email: str | None = None) -> Shopper:
    """Sign up (or, for a shared admin address, just sign in) and log in."""
    name = f"b{uuid.uuid4().hex[:12]}"
    email = email or f"{name}@example.com"
    signup = http.post(
        "/api/v1/auth/signup", json={"username": name, "email": email, "password": PASSWORD}
    )
    assert signup.status_code in (201, 409), signup.text
    login = http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    body = login.json()
    return Shopper(http, body["user"]["id"], email, body["accessToken"])


def assert_json_4xx(response: httpx.Response) -> None:
    """A client error with the shared JSON body: never a 5xx, never an HTML page."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert_json_error(response, response.status_code)


@pytest.fixture(scope="module")
def admin(stack: LocalStack) -> Iterator[Shopper]:
    """An admin of the stack (creates the products)."""
    with gateway_client(stack) as http:
        yield _sign_in(http, ADMIN)


@pytest.fixture(scope="module")
def shopper(stack: LocalStack) -> Iterator[Shopper]:
    """A signed-in user (one for the module: bad input must not change their state)."""
    with gateway_client(stack) as http:
        yield _sign_in(http)


@pytest.fixture
def new_product(admin: Shopper) -> Callable[..., dict[str, Any]]:
    """Create a product through the gateway."""

    def create(stock: int = 5, price: str = "4.00") -> dict[str, Any]:
        sku = f"BAD-{uuid.uuid4().hex[:10]}"
        answer = admin.post(
            "/api/v1/inventory", json={"sku": sku, "name": "Kettle", "price": price, "stock": stock}
        )
        assert answer.status_code == 201, answer.text
        product: dict[str, Any] = answer.json()
        return product

    return create


# ------------------------------------------------------------------ schemathesis
@dataclass
class FuzzReport:
    """What fuzzing one service found."""

    sent: Counter[str] = field(default_factory=Counter)
    """Requests sent, by operation."""
    failures: dict[tuple[str, str, str], str] = field(default_factory=dict)
    """(operation, mode, failure title) -> the failure and a curl command that reproduces it."""


def _fuzz_operation(
    operation: schemathesis.APIOperation[Any, Any, Any, Any],
    mode: GenerationMode,
    base_url: str,
    headers: dict[str, str],
    report: FuzzReport,
) -> None:
    """Send `FUZZ_EXAMPLES` generated requests to one operation; record what fails."""

    @settings(
        max_examples=FUZZ_EXAMPLES,
        derandomize="RELIABILITY_FUZZ_EXAMPLES" not in os.environ,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(mode))
    def run(case: schemathesis.Case[Any]) -> None:
        report.sent[operation.label] += 1
        reproduce = case.as_curl_command(headers=headers, base_url=base_url)
        try:
            case.call_and_validate(
                base_url=base_url, headers=headers, checks=FUZZ_CHECKS, timeout=30
            )
        except FailureGroup as group:
            for failure in group.exceptions:
                key = (operation.label, mode.value, failure.title)
                report.failures.setdefault(key, f"{failure.message}\n  {reproduce}")
        except Exception as exc:  # a dropped connection is a finding too
            key = (operation.label, mode.value, type(exc).__name__)
            report.failures.setdefault(key, f"{exc}\n  {reproduce}")

    try:
        run()
    except Unsatisfiable:
        # Nothing schema-invalid can be generated (an optional cookie, say).
        assert mode is GenerationMode.NEGATIVE, operation.label


def fuzz(base_url: str, headers: dict[str, str]) -> FuzzReport:
    """Run schemathesis on every operation of the service at `base_url`, in both modes."""
    config = schemathesis.Config.from_dict(
        {
            "output": {"sanitization": {"enabled": False}},  # curl commands as sent
        }
    )
    schema = schemathesis.openapi.from_url(base_url + "/openapi.json", config=config, timeout=10)
    report = FuzzReport()
    for result in schema.get_all_operations():
        # An operation schemathesis cannot read is a finding too.
        assert isinstance(result, Ok), result.err()
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz_operation(operation, mode, base_url, headers, report)
    return report


@pytest.mark.parametrize(
    ("service", "role", "operations"),
    [("user", "user", 6), ("inventory", "admin", 27), ("payment", "user", 2)],
)
def test_schemathesis_finds_no_5xx_and_no_schema_violation(
    stack: LocalStack, tried: Tried, service: str, role: str, operations: int
) -> None:
    # The services trust the gateway's identity headers: send them as nginx would.
    headers = {"X-User-Id": str(uuid.uuid4()), "X-User-Role": role}
    report = fuzz(stack.urls(service)[0], headers)
    assert len(report.sent) == operations, report.sent  # every operation was fuzzed
    found = "\n".join(f"{' '.join(key)}: {text}" for key, text in report.failures.items())
    assert not report.failures, f"schemathesis found, on the {service} service:\n{found}"
    tried(
        "input rejected",
        f"schemathesis: {report.sent.total()} generated requests (valid and invalid) on the "
        f"{len(report.sent)} operations of the {service} service: no 5xx, every "
        "answer as documented, invalid data refused",
    )


# ------------------------------------------------------------------ bodies
def test_malformed_json_is_a_400_on_every_service(
    shopper: Shopper, admin: Shopper, tried: Tried
) -> None:
    broken = [
        b'{"productId": "x",',  # truncated
        b"{'quantity': 1}",  # not JSON quotes
        b'{"quantity": 1}}',  # trailing garbage
        b"\xff\xfe\x00{",  # not UTF-8
        b"[" * 200_000,  # nested past any parser's depth
    ]
    routes = [
        (shopper, "/api/v1/inventory/reserve"),
        (shopper, "/api/v1/payment"),
        (admin, "/api/v1/inventory"),
    ]
    for user, path in routes:
        for body in broken:
            answer = user.post(path, content=body, headers=JSON)
            assert_json_4xx(answer)
            assert answer.status_code == 400, (path, body[:20], answer.text)
    tried("input rejected", "malformed, non-UTF-8 and 200k-deep JSON: 400 JSON on each service")


def test_an_oversized_body_is_a_json_413_before_any_service(
    shopper: Shopper, stack: LocalStack, tried: Tried
) -> None:
    big = json.dumps({"productId": str(uuid.uuid4()), "quantity": 1, "pad": "x" * 2_000_000})
    answer = shopper.post("/api/v1/inventory/reserve", content=big, headers=JSON)
    assert_json_error(answer, 413, "payload_too_large")
    # Public routes too: no token needed to be refused.
    with gateway_client(stack) as anonymous:
        signup = anonymous.post("/api/v1/auth/signup", content=big, headers=JSON)
    assert_json_error(signup, 413, "payload_too_large")
    tried("input rejected", "a 2 MB body: 413 JSON from the gateway, authenticated or not")


def test_an_oversized_header_or_uri_is_a_json_4xx(stack: LocalStack, tried: Tried) -> None:
    with gateway_client(stack) as http:
        header = http.get("/api/v1/auth/me", headers={"Authorization": "Bearer " + "a" * 20_000})
        cookie = http.post(
            "/api/v1/auth/refresh", headers={"Cookie": "refreshToken=" + "a" * 20_000}
        )
        uri = http.get("/api/v1/products", params={"q": "a" * 9_000})
    for answer in (header, cookie, uri):
        assert_json_4xx(answer)
    tried("input rejected", "a 20 kB header, a 20 kB cookie, a 9 kB URI: JSON 4xx from the gateway")


def test_a_wrong_content_type_is_a_json_4xx_and_holds_nothing(
    shopper: Shopper, new_product: Callable[..., dict[str, Any]], tried: Tried
) -> None:
    product = new_product(stock=3)
    body = json.dumps({"productId": product["id"], "quantity": 1})
    for content_type in ("text/plain", "application/xml", "application/x-www-form-urlencoded"):
        answer = shopper.post(
            "/api/v1/inventory/reserve", content=body, headers={"Content-Type": content_type}
        )
        assert_json_4xx(answer)
    form = shopper.post("/api/v1/inventory/reserve", data={"productId": product["id"]})
    assert_json_4xx(form)
    multipart = shopper.post(
        "/api/v1/payment", files={"reservationId": (None, "r1"), "amount": (None, "1.00")}
    )
    assert_json_4xx(multipart)
    assert stock_of(shopper.http, product["id"]) == 3
    tried("input rejected", "text, XML, form and multipart bodies: JSON 4xx, nothing held")


def test_wrong_types_are_a_422_naming_the_field(
    shopper: Shopper, admin: Shopper, new_product: Callable[..., dict[str, Any]], tried: Tried
) -> None:
    product = new_product(stock=3)
    pid = product["id"]
    reserves: list[Any] = [
        {"productId": pid, "quantity": "1"},  # a string is not a quantity
        {"productId": pid, "quantity": 1.0},
        {"productId": pid, "quantity": True},
        {"productId": pid, "quantity": None},
        {"productId": 42, "quantity": 1},
        {"productId": "not-a-uuid", "quantity": 1},
        {"productId": [pid], "quantity": 1},
        {"items": {"productId": pid, "quantity": 1}},
        {"items": [pid]},
        {"productId": pid, "quantity": 1, "price": "0.01"},  # unknown fields are refused
        [pid, 1],
        "reserve please",
    ]
    for body in reserves:
        answer = shopper.post("/api/v1/inventory/reserve", json=body)
        assert_json_error(answer, 422, "validation_error")
    products: list[Any] = [
        {"sku": "OK-1", "name": "x", "price": "1.00", "stock": "5"},
        {"sku": "OK-1", "name": "x", "price": "1.00", "stock": 5.5},
        {"sku": "OK-1", "name": "x", "price": True, "stock": 5},
        {"sku": "OK-1", "name": "x", "price": [1], "stock": 5},
        {"sku": 7, "name": "x", "price": "1.00", "stock": 5},
        {"sku": "has spaces", "name": "x", "price": "1.00", "stock": 5},
        {"sku": "OK-1", "name": "", "price": "1.00", "stock": 5},
        {"sku": "OK-1", "name": "n" * 201, "price": "1.00", "stock": 5},
    ]
    for body in products:
        answer = admin.post("/api/v1/inventory", json=body)
        assert_json_error(answer, 422, "validation_error")
    named = shopper.post("/api/v1/inventory/reserve", json={"productId": pid, "quantity": "1"})
    assert "quantity" in named.json()["error"]["message"]
    payments: list[Any] = [
        {"reservationId": 12, "amount": "1.00"},
        {"reservationId": "r1", "amount": "one"},
        {"reservationId": "r1", "amount": None},
        {"reservationId": "r1", "amount": "1.00", "paymentMethod": ["tok_success"]},
        {"reservationId": "", "amount": "1.00"},
        {"reservationId": "r" * 65, "amount": "1.00"},
        {"reservationId": "../../etc/passwd", "amount": "1.00"},
        {"reservationId": "r1"},
    ]
    for body in payments:
        answer = shopper.post("/api/v1/payment", json=body)
        assert_json_error(answer, 422, "validation_error")
    assert stock_of(shopper.http, pid) == 3
    total = len(reserves) + len(products) + len(payments)
    tried("input rejected", f"{total} wrongly typed reserve, product and payment bodies: 422")


@pytest.mark.parametrize(
    "quantity", [0, -1, -(10**6), 1_000_001, 2**31, 2**63, 10**40], ids=lambda q: f"q={q}"
)
def test_absurd_quantities_are_refused_and_hold_nothing(
    shopper: Shopper, new_product: Callable[..., dict[str, Any]], tried: Tried, quantity: int
) -> None:
    product = new_product(stock=5)
    one = shopper.post(
        "/api/v1/inventory/reserve", json={"productId": product["id"], "quantity": quantity}
    )
    assert_json_error(one, 422, "validation_error")
    cart = shopper.post(
        "/api/v1/inventory/reserve",
        json={"items": [{"productId": product["id"], "quantity": quantity}]},
    )
    assert_json_error(cart, 422, "validation_error")
    assert stock_of(shopper.http, product["id"]) == 5
    control = shopper.reserve(product["id"], 1)  # the same request with a sane quantity
    assert control.status_code == 201, control.text
    assert stock_of(shopper.http, product["id"]) == 4
    tried("input rejected", f"reserve quantity {quantity}: 422, nothing held")


def test_a_cart_summing_past_the_stock_is_409_and_holds_nothing(
    shopper: Shopper, new_product: Callable[..., dict[str, Any]], tried: Tried
) -> None:
    product, other = new_product(stock=5), new_product(stock=2)
    # Each line fits on its own; their sum does not.
    lines = [{"productId": product["id"], "quantity": 3}] * 2
    answer = shopper.post(
        "/api/v1/inventory/reserve",
        json={"items": [*lines, {"productId": other["id"], "quantity": 1}]},
    )
    assert_json_error(answer, 409, "out_of_stock")
    assert answer.json()["error"]["details"] == [
        {"productId": product["id"], "requested": 6, "available": 5}
    ]
    too_long = [{"productId": other["id"], "quantity": 1}] * 51
    assert_json_error(
        shopper.post("/api/v1/inventory/reserve", json={"items": too_long}), 422, "validation_error"
    )
    assert_json_error(
        shopper.post("/api/v1/inventory/reserve", json={"items": []}), 422, "validation_error"
    )
    assert stock_of(shopper.http, product["id"]) == 5
    assert stock_of(shopper.http, other["id"]) == 2
    tried("input rejected", "a cart whose lines sum past the stock, 51 lines, 0 lines: 4xx")


def test_a_cart_summing_past_the_unit_limit_is_a_4xx(
    shopper: Shopper, new_product: Callable[..., dict[str, Any]], tried: Tried
) -> None:
    product = new_product(stock=1_000_000)
    lines = [{"productId": product["id"], "quantity": 1_000_000}] * 2
    answer = shopper.post("/api/v1/inventory/reserve", json={"items": lines})
    assert_json_4xx(answer)
    assert stock_of(shopper.http, product["id"]) == 1_000_000
    tried("input rejected", "a cart of 2 x 1,000,000 units of one product: 4xx, nothing held")


# Raw JSON: numbers past a float's range, NaN and Infinity as the parser sees them.
PRICES = ["0", '"0.00"', "-1", '"0.001"', "1000000.01", "1e30", "1e400", "1e-400", "NaN"]
PRICES += ["Infinity", '"NaN"', '""', '"12,50"', "true", "[1]"]


@pytest.mark.parametrize("price", PRICES)
def test_absurd_prices_are_refused(admin: Shopper, tried: Tried, price: str) -> None:
    sku = f"PRICE-{uuid.uuid4().hex[:8]}"

    def body(price: str) -> str:
        return f'{{"sku": "{sku}", "name": "x", "price": {price}, "stock": 1}}'

    answer = admin.post("/api/v1/inventory", content=body(price), headers=JSON)
    assert_json_error(answer, 422, "validation_error")
    # The control: the same body with a sane price is accepted, so no product was made.
    fixed = admin.post("/api/v1/inventory", content=body('"1.00"'), headers=JSON)
    assert fixed.status_code == 201, fixed.text
    tried("input rejected", f"product price {price}: 422")


def test_absurd_stock_and_restock_are_refused(
    admin: Shopper, new_product: Callable[..., dict[str, Any]], tried: Tried
) -> None:
    for stock in (-1, 1_000_001, 10**30):
        body = {"sku": f"STOCK-{uuid.uuid4().hex[:8]}", "name": "x", "price": "1.00"}
        answer = admin.post("/api/v1/inventory", json={**body, "stock": stock})
        assert_json_error(answer, 422, "validation_error")
        control = admin.post("/api/v1/inventory", json={**body, "stock": 1_000_000})
        assert control.status_code == 201, control.text  # nothing was made by the refused one
    product = new_product(stock=2)
    for quantity in (0, -5, 1_000_001, 10**30, "3", 2.5):
        answer = admin.post(
            f"/api/v1/inventory/{product['id']}/restock", json={"quantity": quantity}
        )
        assert_json_error(answer, 422, "validation_error")
    assert stock_of(admin.http, product["id"]) == 2
    tried("input rejected", "negative and huge stock, zero/negative/huge/typed restock: 422")


@pytest.mark.parametrize("amount", ["0", '"-1.00"', '"0.001"', "1000000.01", "1e400", "NaN"])
def test_absurd_payment_amounts_charge_nothing(
    shopper: Shopper, new_product: Callable[..., dict[str, Any]], tried: Tried, amount: str
) -> None:
    product = new_product(stock=1)
    reservation_id = shopper.reserve(product["id"]).json()["reservationId"]

    def body(amount: str) -> str:
        return f'{{"reservationId": "{reservation_id}", "amount": {amount}}}'

    answer = shopper.post("/api/v1/payment", content=body(amount), headers=JSON)
    assert_json_error(answer, 422, "validation_error")
    assert_json_error(shopper.payment(reservation_id), 404, "payment_not_found")
    assert shopper.reservation(reservation_id)["status"] == "PENDING"
    # The control: the same body with the right amount is accepted.
    control = shopper.post("/api/v1/payment", content=body('"4.00"'), headers=JSON)
    assert control.status_code == 202, control.text
    tried("input rejected", f"payment amount {amount}: 422, nothing charged")


def test_a_nul_character_in_text_is_a_4xx(admin: Shopper, stack: LocalStack, tried: Tried) -> None:
    sku = f"NUL-{uuid.uuid4().hex[:8]}"
    product = admin.post(
        "/api/v1/inventory", json={"sku": sku, "name": "a\x00b", "price": "1.00", "stock": 1}
    )
    with gateway_client(stack) as http:
        name = f"n{uuid.uuid4().hex[:12]}"
        signup = http.post(
            "/api/v1/auth/signup",
            json={"username": name, "email": f"{name}\x00@example.com", "password": PASSWORD},
        )
        by_email = http.post("/api/v1/auth/login", json={"email": "a\x00@b.co", "password": "x"})
        by_name = http.post("/api/v1/auth/login", json={"username": "a\x00", "password": "x"})
    for answer in (product, signup, by_email, by_name):
        assert_json_4xx(answer)
    tried("input rejected", "a NUL character in a product name, an email, a username: 4xx")


def test_unknown_products_and_reservations_are_404(
    shopper: Shopper, admin: Shopper, new_product: Callable[..., dict[str, Any]], tried: Tried
) -> None:
    ghost = str(uuid.uuid4())
    product = new_product(stock=4)
    assert_json_error(shopper.http.get(f"/api/v1/products/{ghost}"), 404, "product_not_found")
    assert_json_error(shopper.http.get("/api/v1/products/not-a-uuid"), 422)
    assert_json_error(shopper.reserve(ghost), 404, "product_not_found")
    # One unknown line sinks the whole cart: the known line is not held either.
    cart = shopper.post(
        "/api/v1/inventory/reserve",
        json={
            "items": [
                {"productId": product["id"], "quantity": 4},
                {"productId": ghost, "quantity": 1},
            ]
        },
    )
    assert_json_error(cart, 404, "product_not_found")
    assert ghost in cart.json()["error"]["message"]
    assert stock_of(shopper.http, product["id"]) == 4
    restock = admin.post(f"/api/v1/inventory/{ghost}/restock", json={"quantity": 1})
    assert_json_error(restock, 404, "product_not_found")
    for path in (
        f"/api/v1/inventory/reservations/{ghost}",
        f"/api/v1/payment/{ghost}",
    ):
        assert_json_error(shopper.get(path), 404, "reservation_not_found")
    cancel = shopper.post(f"/api/v1/inventory/reservations/{ghost}/cancel")
    assert_json_error(cancel, 404, "reservation_not_found")
    assert_json_error(shopper.pay(ghost, "1.00"), 404, "reservation_not_found")
    tried("input rejected", "unknown products and reservations (read, reserve, pay, cancel): 404")


# ------------------------------------------------------------------ Kafka
def _envelope(event_type: str, data: dict[str, Any], version: int = 1) -> bytes:
    return json.dumps(
        {
            "id": str(uuid.uuid4()),
            "source": "reliability-suite",
            "specversion": "1.0",
            "type": event_type,
            "time": "2030-01-01T00:00:00Z",
            "subject": "garbage",
            "datacontenttype": "application/json",
            "schemaversion": version,
            "data": data,
        }
    ).encode()


_MONEY = {
    "payment_id": "p-1",
    "reservation_id": "r-1",
    "user_id": "u-1",
    "amount": "1.00",
    "currency": "USD",
}


def _garbage(topic: str) -> dict[str, tuple[bytes | None, str]]:
    """kind -> (the message's value, the error class its dead letter names)."""
    invalid_data = {
        "payments": _envelope("payment.confirmed", {**_MONEY, "amount": "-5", "currency": "usd"}),
        "refunds": _envelope("refund.requested", {**_MONEY, "reason": "x"}),  # no refund_id
        "users": _envelope("user.created", {"user_id": "u", "username": "u", "email": "nope"}),
    }[topic]
    known_type = {"payments": "payment.confirmed", "refunds": "refund.requested"}
    known_type["users"] = "user.created"
    return {
        "raw-bytes": (b"\x00\x01\xfe\xffnot an event\x00", "MalformedEvent"),
        "bad-json": (b'{"id": "1", "type": "payment.confirmed", "data": {', "MalformedEvent"),
        "empty": (None, "MalformedEvent"),
        "unknown-type": (_envelope("payment.teleported", dict(_MONEY)), "UnknownEventType"),
        "future-version": (
            _envelope(known_type[topic], dict(_MONEY), version=99),
            "UnsupportedSchemaVersion",
        ),
        "invalid-data": (invalid_data, "MalformedEvent"),
    }


async def _publish_garbage(
    bootstrap: str, marker: str
) -> dict[bytes, tuple[str, int, bytes | None, str]]:
    """Every kind of garbage on every partition of each consumed topic; key -> what was sent."""
    sent: dict[bytes, tuple[str, int, bytes | None, str]] = {}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for topic in GROUPS_BY_TOPIC:
            partitions = sorted(await producer.partitions_for(topic))
            assert partitions, topic
            for partition, (kind, (value, error)) in itertools.product(
                partitions, _garbage(topic).items()
            ):
                key = f"{marker}:{topic}:{partition}:{kind}".encode()
                await producer.send_and_wait(topic, value, key=key, partition=partition)
                sent[key] = (topic, partition, value, error)
    finally:
        await producer.stop()
    return sent


async def _dead_letters(
    bootstrap: str, marker: str, expected: int, within: float = 60.0
) -> list[DeadLetter]:
    """The dead letters whose key carries `marker`, once `expected` of them arrived."""
    topic = TopicNames().dead_letter_topic
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    found: list[DeadLetter] = []
    try:
        deadline = time.monotonic() + within
        while len(found) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    if record.key is not None and record.key.startswith(marker.encode()):
                        found.append(
                            DeadLetter.from_record(record.value, record.key, record.headers)
                        )
    finally:
        await consumer.stop()
    return found


async def test_garbage_on_kafka_is_dead_lettered_and_the_consumers_keep_going(
    stack: LocalStack,
    kafka_server: KafkaServer,
    shopper: Shopper,
    new_product: Callable[..., dict[str, Any]],
    tried: Tried,
) -> None:
    bootstrap = kafka_server.bootstrap_servers
    marker = f"reliability-{uuid.uuid4().hex[:10]}"
    sent = await _publish_garbage(bootstrap, marker)
    expected = sum(len(GROUPS_BY_TOPIC[topic]) for topic, *_ in sent.values())
    letters = await _dead_letters(bootstrap, marker, expected)

    # Every message reached the dead-letter topic once per group reading its topic,
    # untouched, with where it came from and why.
    by_key: dict[bytes, set[str]] = {}
    for letter in letters:
        assert letter.key is not None
        topic, partition, value, error = sent[letter.key]
        assert (letter.topic, letter.partition) == (topic, partition)
        assert letter.value == value
        assert letter.error == error, (letter.key, letter.reason)
        assert letter.reason
        assert letter.attempts == 0  # never handed to a handler
        by_key.setdefault(letter.key, set()).add(letter.group)
    missing = {
        key.decode(): GROUPS_BY_TOPIC[topic] - by_key.get(key, set())
        for key, (topic, *_) in sent.items()
        if GROUPS_BY_TOPIC[topic] - by_key.get(key, set())
    }
    assert not missing, f"not dead-lettered by: {missing}"

    # Every group went past the garbage on every partition: a flow that needs
    # each of them completes. A fresh user (users -> email), a payment
    # (payments -> inventory, email), a second payment of the same reservation
    # (refund.requested -> payment, refund.completed -> email).
    buyer = _sign_in(shopper.http)
    product = new_product(stock=2, price="3.00")
    reservation_id = buyer.reserve(product["id"]).json()["reservationId"]
    assert buyer.pay(reservation_id, "3.00").status_code == 202
    eventually(payment_status(buyer, reservation_id, "confirmed"), "the confirmation")
    assert buyer.reservation(reservation_id)["status"] == "CONFIRMED"
    assert buyer.pay(reservation_id, "3.00").status_code == 202  # a double payment
    # The order reads as paid; the second payment's refund is listed with it.
    eventually(lambda: buyer.payment(reservation_id).json()["refunds"], "the refund")
    refunded = buyer.payment(reservation_id).json()
    assert refunded["status"] == "confirmed"
    eventually(
        lambda: (
            [r["status"] for r in buyer.payment(reservation_id).json()["refunds"]] == ["completed"]
        ),
        "the refund to complete",
    )
    assert refunded["refunds"][0]["reason"] == "DOUBLE_PAYMENT"
    eventually(
        lambda: (
            {"user.created", "payment.confirmed", "refund.completed"}
            <= set(mail_types(stack, buyer.email))
        ),
        "the welcome, payment and refund emails",
    )
    kinds = sorted({kind for _, _, kind in (k.decode().rsplit(":", 2) for k in sent)})
    tried(
        "input rejected",
        f"{len(sent)} malformed Kafka messages ({', '.join(kinds)}) on every partition of "
        f"{', '.join(GROUPS_BY_TOPIC)}: {len(letters)} dead letters, every consumer group "
        "kept going",
    )
