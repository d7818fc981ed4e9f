"""The inventory service's routes on real PostgreSQL and Redis (the in-memory bus for Kafka)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from reference_app.common.db import migrate
from reference_app.common.infra import Infra
from reference_app.inventory.main import create_app, wire
from reference_app.settings import InventorySettings
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from commercekit.events import Envelope, InMemoryEventBus, PaymentConfirmed
from commercekit.testing.servers import PostgresServer, RedisServer

SETTINGS = InventorySettings(environment="development", reservation_ttl_seconds=60)
ADMIN = {"X-User-Id": "admin-1", "X-User-Role": "admin"}
ALICE = {"X-User-Id": "alice", "X-User-Role": "user"}
BOB = {"X-User-Id": "bob", "X-User-Role": "user"}


class Inventory:
    """The service in process, and what it is wired to."""

    def __init__(self, http: httpx.AsyncClient, bus: InMemoryEventBus, infra: Infra) -> None:
        self.http = http
        self.bus = bus
        self.infra = infra

    async def product(self, stock: int = 10, price: str = "5.00") -> str:
        sku = f"SKU-{uuid.uuid4().hex[:8]}"
        body = {"sku": sku, "name": "Mug", "price": price, "stock": stock}
        answer = await self.http.post("/api/v1/inventory", json=body, headers=ADMIN)
        assert answer.status_code == 201, answer.text
        product_id: str = answer.json()["id"]
        return product_id

    async def reserve(
        self, body: Any, who: dict[str, str] = ALICE, **headers: str
    ) -> httpx.Response:
        return await self.http.post(
            "/api/v1/inventory/reserve", json=body, headers={**who, **headers}
        )

    async def stock(self, product_id: str) -> int:
        answer = await self.http.get(f"/api/v1/products/{product_id}")
        stock: int = answer.json()["stock"]
        return stock


@pytest.fixture
async def inventory(
    postgres_server: PostgresServer, redis_server: RedisServer
) -> AsyncIterator[Inventory]:
    url = postgres_server.create_database(f"inventory_{uuid.uuid4().hex[:10]}")
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))
    await migrate(engine)
    redis = Redis.from_url(redis_server.url)
    await redis.flushdb()
    bus = InMemoryEventBus()
    await bus.start()
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    infra = Infra(engine, sessions, redis_client=redis, event_bus=bus)
    app = create_app(SETTINGS)  # its lifespan (real connections) is not run; wire is
    try:
        async with wire(app, SETTINGS, infra):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://inventory") as http:
                yield Inventory(http, bus, infra)
    finally:
        await bus.stop()
        await redis.aclose()
        await engine.dispose()


async def test_products_are_created_by_admins_only_and_listed_with_their_stock(
    inventory: Inventory,
) -> None:
    product_id = await inventory.product(stock=7, price="19.99")
    body = {"sku": "OTHER-1", "name": "Cap", "price": 3, "stock": 1}
    denied = await inventory.http.post("/api/v1/inventory", json=body, headers=ALICE)
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "forbidden"
    anonymous = await inventory.http.post("/api/v1/inventory", json=body)
    assert anonymous.status_code == 401
    listed = await inventory.http.get("/api/v1/products", params={"limit": 10})
    assert listed.headers["X-Total-Count"] == "1"
    [product] = listed.json()
    assert (product["id"], product["price"], product["stock"]) == (product_id, "19.99", 7)
    sku = product["sku"]
    again = await inventory.http.post("/api/v1/inventory", json={**body, "sku": sku}, headers=ADMIN)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "sku_taken"


async def test_the_product_list_pages_oldest_first_and_always_counts_them_all(
    inventory: Inventory,
) -> None:
    ids = [await inventory.product(stock=n + 1) for n in range(5)]
    pages = [
        await inventory.http.get("/api/v1/products", params={"limit": 2, "offset": offset})
        for offset in (0, 2, 4, 5, 50)
    ]
    assert [page.headers["X-Total-Count"] for page in pages] == ["5"] * 5
    listed = [product for page in pages for product in page.json()]
    assert [p["id"] for p in listed] == ids
    assert [p["stock"] for p in listed] == [1, 2, 3, 4, 5]
    assert pages[3].json() == pages[4].json() == []


async def test_a_cart_is_held_all_or_nothing_and_same_product_lines_are_summed(
    inventory: Inventory,
) -> None:
    mug, cap = await inventory.product(stock=4), await inventory.product(stock=10)
    twice = {"items": [{"productId": mug, "quantity": 3}, {"productId": mug, "quantity": 3}]}
    short = await inventory.reserve(twice)
    assert short.status_code == 409
    assert short.json()["error"]["details"] == [{"productId": mug, "requested": 6, "available": 4}]
    cart = {"items": [{"productId": mug, "quantity": 4}, {"productId": cap, "quantity": 2}]}
    held = await inventory.reserve(cart)
    assert held.status_code == 201, held.text
    answer = held.json()
    assert answer["success"] is True
    assert answer["status"] == "PENDING"
    assert {(i["productId"], i["quantity"]) for i in answer["items"]} == {(mug, 4), (cap, 2)}
    assert (await inventory.stock(mug), await inventory.stock(cap)) == (0, 8)


async def test_the_idempotency_key_replays_for_its_owner_only(inventory: Inventory) -> None:
    mug = await inventory.product(stock=5)
    first = await inventory.reserve({"productId": mug, "quantity": 2}, **{"Idempotency-Key": "k"})
    again = await inventory.reserve({"productId": mug, "quantity": 2}, **{"Idempotency-Key": "k"})
    assert first.status_code == again.status_code == 201
    assert first.json()["reservationId"] == again.json()["reservationId"]
    other_cart = await inventory.reserve(
        {"productId": mug, "quantity": 1}, **{"Idempotency-Key": "k"}
    )
    assert other_cart.status_code == 409
    assert other_cart.json()["error"]["code"] == "idempotency_conflict"
    bobs = await inventory.reserve(
        {"productId": mug, "quantity": 2}, BOB, **{"Idempotency-Key": "k"}
    )
    assert bobs.status_code == 201
    assert bobs.json()["reservationId"] != first.json()["reservationId"]
    assert await inventory.stock(mug) == 1


async def test_only_the_owner_reads_or_cancels_a_reservation(inventory: Inventory) -> None:
    mug = await inventory.product(stock=3)
    held = (await inventory.reserve({"productId": mug, "quantity": 3})).json()
    path = f"/api/v1/inventory/reservations/{held['reservationId']}"
    assert (await inventory.http.get(path, headers=BOB)).status_code == 404
    assert (await inventory.http.post(path + "/cancel", headers=BOB)).status_code == 404
    assert (await inventory.http.get(path)).status_code == 401
    mine = await inventory.http.get(path, headers=ALICE)
    assert mine.json()["status"] == "PENDING"
    cancelled = await inventory.http.post(path + "/cancel", headers=ALICE)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "RELEASED"
    assert await inventory.stock(mug) == 3
    twice = await inventory.http.post(path + "/cancel", headers=ALICE)
    assert twice.status_code == 409
    assert await inventory.stock(mug) == 3  # returned once


async def test_restock_adds_units_for_admins_only(inventory: Inventory) -> None:
    mug = await inventory.product(stock=1)
    path = f"/api/v1/inventory/{mug}/restock"
    assert (await inventory.http.post(path, json={"quantity": 4}, headers=ALICE)).status_code == 403
    restocked = await inventory.http.post(path, json={"quantity": 4}, headers=ADMIN)
    assert restocked.json()["stock"] == 5
    unknown = await inventory.http.post(
        f"/api/v1/inventory/{uuid.uuid4()}/restock", json={"quantity": 1}, headers=ADMIN
    )
    assert unknown.status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"quantity": 0},
        {"quantity": -1},
        {"quantity": 10**12},
        {"quantity": "2"},
        {"quantity": 1.5},
        {"quantity": None},
        {"productId": "not-a-uuid", "quantity": 1},
        {"items": []},
        {"items": [{"quantity": 1}]},
        {"items": "all"},
        {"extra": True, "quantity": 1},
        ["a list"],
    ],
)
async def test_bad_reserve_bodies_get_a_json_4xx_and_hold_nothing(
    inventory: Inventory, body: Any
) -> None:
    mug = await inventory.product(stock=2)
    if isinstance(body, dict) and "productId" not in body and "items" not in body:
        body = {"productId": mug, **body}
    answer = await inventory.reserve(body)
    assert 400 <= answer.status_code < 500
    assert answer.json()["error"]["message"]
    assert await inventory.stock(mug) == 2


async def test_an_unknown_product_is_a_404(inventory: Inventory) -> None:
    answer = await inventory.reserve({"productId": str(uuid.uuid4()), "quantity": 1})
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "product_not_found"


async def test_concurrent_reserves_never_oversell(inventory: Inventory) -> None:
    mug = await inventory.product(stock=20)
    answers = await asyncio.gather(
        *(inventory.reserve({"productId": mug, "quantity": 1}) for _ in range(60))
    )
    assert sorted(a.status_code for a in answers) == [201] * 20 + [409] * 40
    assert await inventory.stock(mug) == 0


async def test_a_payment_event_confirms_at_the_products_price(inventory: Inventory) -> None:
    mug = await inventory.product(stock=5, price="2.50")
    held = (await inventory.reserve({"productId": mug, "quantity": 2})).json()
    paid = PaymentConfirmed(
        payment_id=str(uuid.uuid4()),
        reservation_id=held["reservationId"],
        user_id="alice",
        amount=Decimal("5.00"),
        currency=SETTINGS.currency,
    )
    await inventory.bus.publish(Envelope.wrap(paid, source="test"))
    await inventory.bus.drain()
    path = f"/api/v1/inventory/reservations/{held['reservationId']}"
    assert (await inventory.http.get(path, headers=ALICE)).json()["status"] == "CONFIRMED"
