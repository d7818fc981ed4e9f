"""What the API documents is what it accepts, end to end: each limit from its one constant."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from reference_app.common.identity import MAX_IDEMPOTENCY_KEY
from reference_app.common.money import MAX_AMOUNT
from reference_app.inventory.schemas import MAX_UNITS
from reference_app.launch import LocalStack

from tests.e2e.conftest import SHARED_ADMIN_EMAIL
from tests.e2e.gateway import assert_json_error, gateway_client
from tests.e2e.reliability.conftest import Tried

PASSWORD = "correct horse battery staple"


def _sign_in(http: httpx.Client, email: str | None = None) -> dict[str, str]:
    name = f"m{uuid.uuid4().hex[:12]}"
    email = email or f"{name}@example.com"
    body = {"username": name, "email": email, "password": PASSWORD}
    assert http.post("/api/v1/auth/signup", json=body).status_code in (201, 409)
    login = http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['accessToken']}"}


@pytest.fixture(scope="module")
def http(stack: LocalStack) -> Iterator[httpx.Client]:
    with gateway_client(stack) as client:
        yield client


@pytest.fixture(scope="module")
def admin(http: httpx.Client) -> dict[str, str]:
    return _sign_in(http, SHARED_ADMIN_EMAIL)


def _product(http: httpx.Client, admin: dict[str, str], price: Decimal, stock: int) -> Any:
    body = {"sku": f"LIM-{uuid.uuid4().hex[:10]}", "name": "Vase", "price": str(price)}
    answer = http.post("/api/v1/inventory", json={**body, "stock": stock}, headers=admin)
    assert answer.status_code == 201, answer.text
    return answer.json()


def _stock(http: httpx.Client, product_id: str) -> int:
    answer = http.get(f"/api/v1/products/{product_id}")
    assert answer.status_code == 200, answer.text
    stock: int = answer.json()["stock"]
    return stock


def test_the_documented_idempotency_key_length_is_accepted_end_to_end(
    stack: LocalStack, http: httpx.Client, admin: dict[str, str], tried: Tried
) -> None:
    # The documents say what the routes accept: the same constant.
    inventory = stack.urls("inventory")[0]
    document = httpx.get(inventory + "/openapi.json", timeout=10).json()
    reserve_doc = document["paths"]["/api/v1/inventory/reserve"]["post"]
    (header,) = [p for p in reserve_doc["parameters"] if p["name"] == "Idempotency-Key"]
    assert header["schema"]["anyOf"][0]["maxLength"] == MAX_IDEMPOTENCY_KEY

    product = _product(http, admin, Decimal("2.00"), stock=10)
    shopper = _sign_in(http)
    body = {"productId": product["id"], "quantity": 1}
    longest = uuid.uuid4().hex + "k" * (MAX_IDEMPOTENCY_KEY - 32)
    assert len(longest) == MAX_IDEMPOTENCY_KEY
    first = http.post(
        "/api/v1/inventory/reserve", json=body, headers={**shopper, "Idempotency-Key": longest}
    )
    assert first.status_code == 201, first.text
    again = http.post(
        "/api/v1/inventory/reserve", json=body, headers={**shopper, "Idempotency-Key": longest}
    )
    assert again.status_code == 201, again.text
    assert again.json()["reservationId"] == first.json()["reservationId"]
    assert _stock(http, product["id"]) == 9  # one hold, replayed

    reservation = first.json()["reservationId"]
    pay = {"reservationId": reservation, "amount": "2.00", "paymentMethod": "tok_success"}
    paid = http.post("/api/v1/payment", json=pay, headers={**shopper, "Idempotency-Key": longest})
    assert paid.status_code == 202, paid.text

    too_long = longest + "x"
    for path, sent in (("/api/v1/inventory/reserve", body), ("/api/v1/payment", pay)):
        refused = http.post(path, json=sent, headers={**shopper, "Idempotency-Key": too_long})
        assert_json_error(refused, 422)
    assert _stock(http, product["id"]) == 9
    tried(
        "input rejected",
        f"an Idempotency-Key of the documented {MAX_IDEMPOTENCY_KEY} characters: reserve "
        f"201 and replayed, payment 202; {MAX_IDEMPOTENCY_KEY + 1}: 422 on both",
    )


def test_a_cart_no_payment_could_cover_is_refused_at_reserve(
    http: httpx.Client, admin: dict[str, str], tried: Tried
) -> None:
    half = (MAX_AMOUNT / 2).quantize(Decimal("0.01"))
    shopper = _sign_in(http)

    # Exactly the largest payable amount: held, and paid in full.
    fits = _product(http, admin, half, stock=4)
    held = http.post(
        "/api/v1/inventory/reserve", json={"productId": fits["id"], "quantity": 2}, headers=shopper
    )
    assert held.status_code == 201, held.text
    pay = {
        "reservationId": held.json()["reservationId"],
        "amount": str(MAX_AMOUNT),
        "paymentMethod": "tok_success",
    }
    paid = http.post("/api/v1/payment", json=pay, headers=shopper)
    assert paid.status_code == 202, paid.text

    # A cent more, as one line, as a cart, and as the largest quantity: 422, nothing held.
    over = _product(http, admin, half + Decimal("0.01"), stock=MAX_UNITS)
    cheap = _product(http, admin, Decimal("0.01"), stock=MAX_UNITS)
    carts = {
        "one line": [{"productId": over["id"], "quantity": 2}],
        "two lines of one product": [
            {"productId": over["id"], "quantity": 1},
            {"productId": over["id"], "quantity": 1},
        ],
        "a cart of two products": [
            {"productId": fits["id"], "quantity": 2},
            {"productId": cheap["id"], "quantity": 1},
        ],
        "the largest quantity": [{"productId": over["id"], "quantity": MAX_UNITS}],
    }
    for what, items in carts.items():
        refused = http.post("/api/v1/inventory/reserve", json={"items": items}, headers=shopper)
        error = assert_json_error(refused, 422, "cart_total_too_large")
        assert error["details"]["maximum"] == str(MAX_AMOUNT), (what, error)
        assert Decimal(error["details"]["total"]) > MAX_AMOUNT, (what, error)
    assert _stock(http, over["id"]) == MAX_UNITS
    assert _stock(http, cheap["id"]) == MAX_UNITS
    assert _stock(http, fits["id"]) == 2
    tried(
        "input rejected",
        f"carts totalling a cent more than the largest payable amount ({MAX_AMOUNT}): 422 "
        "cart_total_too_large at reserve, nothing held; exactly that amount: held and paid",
    )
