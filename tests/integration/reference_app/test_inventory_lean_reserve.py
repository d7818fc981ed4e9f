"""The lean reserve answers exactly as the FastAPI route does, on real PostgreSQL and Redis.

The same requests go to the service with its lean reserve
(`reference_app.inventory.routes.LEAN_ROUTES`) and without it; the answers
(status, content type, body) are the same once products, SKUs, ids and
times are named by their order of appearance.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from reference_app.inventory.main import create_app, wire

from commercekit.testing.servers import PostgresServer, RedisServer

from .test_inventory_service import ADMIN, ALICE, BOB, SETTINGS, inventory_infra

RESERVE = "/api/v1/inventory/reserve"
UNKNOWN = "00000000-0000-4000-8000-000000000000"
_TIME = re.compile(r"^\d{4}-\d\d-\d\dT")


@pytest.fixture
async def services(
    postgres_server: PostgresServer, redis_server: RedisServer
) -> AsyncIterator[dict[bool, httpx.AsyncClient]]:
    lean, plain = create_app(SETTINGS, lean=True), create_app(SETTINGS, lean=False)
    async with (
        inventory_infra(postgres_server, redis_server) as infra,
        wire(lean, SETTINGS, infra),
        wire(plain, SETTINGS, infra),
    ):
        clients = {
            mode: httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://i")
            for mode, app in ((True, lean), (False, plain))
        }
        yield clients
        for client in clients.values():
            await client.aclose()


class Names:
    """Replaces what differs between two runs by the order it first appeared in."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def add(self, value: str, kind: str) -> None:
        self.names.setdefault(value, f"<{kind}{len(self.names)}>")

    def __call__(self, body: Any) -> Any:
        if isinstance(body, dict):
            if isinstance(body.get("id"), str):
                self.add(body["id"], "reservation")
            return {key: self(value) for key, value in body.items()}
        if isinstance(body, list):
            return [self(item) for item in body]
        if isinstance(body, str):
            if _TIME.match(body):
                return "<time>"
            for value, name in self.names.items():
                body = body.replace(value, name)
        return body


async def _scenario(http: httpx.AsyncClient) -> list[tuple[int, str, Any]]:
    names = Names()

    async def product(stock: int, price: str = "5.00") -> str:
        sku = f"SKU-{uuid.uuid4().hex[:8]}"
        made = await http.post(
            "/api/v1/inventory",
            json={"sku": sku, "name": "Mug", "price": price, "stock": stock},
            headers=ADMIN,
        )
        assert made.status_code == 201, made.text
        names.add(made.json()["id"], "product")
        names.add(sku, "sku")
        return str(made.json()["id"])

    mug, tea, dear = await product(4), await product(10), await product(5, price="1000000.00")
    box = await product(0, price="12.00")
    kit = {"components": [{"productId": mug, "quantity": 1}, {"productId": tea, "quantity": 2}]}
    assert (await http.put(f"/api/v1/inventory/{box}/kit", json=kit, headers=ADMIN)).is_success
    limit = {"quantity": 2, "windowSeconds": 60}
    assert (await http.put(f"/api/v1/inventory/{tea}/limit", json=limit, headers=ADMIN)).is_success
    json_type = {"content-type": "application/json"}
    one = {"productId": mug, "quantity": 1}
    key = f"k-{uuid.uuid4()}"  # the two runs share a Redis
    requests: list[tuple[Any, dict[str, str]]] = [
        (one, ALICE),
        ({"items": [{"productId": mug, "quantity": 1}, {"productId": mug, "quantity": 1}]}, BOB),
        ({"items": [{"productId": box, "quantity": 1}]}, BOB),  # a kit: its allocations
        (one, ALICE),  # out of stock
        ({"productId": tea, "quantity": 3}, ALICE),  # over the purchase limit
        ({"productId": UNKNOWN, "quantity": 1}, ALICE),
        ({**one, "channel": "nowhere"}, ALICE),  # unknown channel
        ({"productId": dear, "quantity": 2}, ALICE),  # more than any payment
        ({"productId": tea, "quantity": 1}, {**ALICE, "Idempotency-Key": key}),
        ({"productId": tea, "quantity": 1}, {**ALICE, "Idempotency-Key": key}),  # replayed
        ({"productId": tea, "quantity": 2}, {**ALICE, "Idempotency-Key": key}),  # reused
        ({"productId": tea, "quantity": 1}, {**ALICE, "Idempotency-Key": "a key"}),
        ({"productId": tea, "quantity": 1}, {**ALICE, "Idempotency-Key": "k" * 201}),
        ({"productId": tea, "quantity": 1}, {**ALICE, "Idempotency-Key": ""}),
        (one, {}),  # no caller
        ({"nonsense": True}, {}),  # no caller comes first
        ({"productId": mug}, ALICE),
        ({"productId": mug, "quantity": 0}, ALICE),
        ({"productId": mug, "quantity": "1"}, ALICE),
        ({"productId": mug, "quantity": 1.0}, ALICE),
        ({"items": []}, ALICE),
        ({**one, "extra": 1}, ALICE),
        (["a list"], ALICE),
        (b'{"productId": ', {**ALICE, **json_type}),  # not JSON
        (b"", {**ALICE, **json_type}),
        (b'{"productId": "x", "quantity": 1}', {**ALICE, "content-type": "text/plain"}),
        (b"\xff\xfe", {**ALICE, **json_type}),
    ]
    answers = []
    for body, headers in requests:
        if isinstance(body, bytes):
            answer = await http.post(RESERVE, content=body, headers=headers)
        else:
            answer = await http.post(RESERVE, json=body, headers=headers)
        answers.append((answer.status_code, answer.headers["content-type"], names(answer.json())))
    return answers


async def test_the_lean_reserve_answers_every_request_as_the_fastapi_route_does(
    services: dict[bool, httpx.AsyncClient],
) -> None:
    lean, plain = await _scenario(services[True]), await _scenario(services[False])
    assert [status for status, _, _ in lean] == [
        201, 201, 201, 409, 409, 404, 404, 422, 201, 201, 409,
        422, 422, 422, 401, 401, 422, 422, 422, 422, 422, 422, 422, 400, 422, 422, 400,
    ]  # fmt: skip
    for asked, (lean_answer, plain_answer) in enumerate(zip(lean, plain, strict=True)):
        assert lean_answer == plain_answer, f"request {asked}"
    # The kit's answer names its components' products, like the route's.
    assert {a["productId"] for a in lean[2][2]["allocations"]} == {"<product0>", "<product2>"}
