"""The inventory service's routes on real PostgreSQL and Redis (the in-memory bus for Kafka)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from reference_app.common.db import migrate
from reference_app.common.infra import Infra
from reference_app.inventory.main import create_app, wire
from reference_app.settings import InventorySettings
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from commercekit.events import Envelope, InMemoryEventBus, PaymentConfirmed
from commercekit.events.outbox import OutboxMessage
from commercekit.payments import RefundService
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

    async def pay(self, reservation_id: str, amount: str) -> Envelope[PaymentConfirmed]:
        """Alice's payment of `amount` for the reservation, delivered and handled."""
        paid = PaymentConfirmed(
            payment_id=str(uuid.uuid4()),
            reservation_id=reservation_id,
            user_id="alice",
            amount=Decimal(amount),
            currency=SETTINGS.currency,
        )
        event = Envelope.wrap(paid, source="test")
        await self.bus.publish(event)
        await self.bus.drain()
        return event

    async def stock(self, product_id: str) -> int:
        answer = await self.http.get(f"/api/v1/products/{product_id}")
        stock: int = answer.json()["stock"]
        return stock


@asynccontextmanager
async def inventory_infra(
    postgres_server: PostgresServer, redis_server: RedisServer
) -> AsyncIterator[Infra]:
    """A fresh database and an empty Redis, with the in-memory bus for Kafka."""
    url = postgres_server.create_database(f"inventory_{uuid.uuid4().hex[:10]}")
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))
    await migrate(engine)
    redis = Redis.from_url(redis_server.url)
    await redis.flushdb()
    bus = InMemoryEventBus()
    await bus.start()
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    try:
        yield Infra(engine, sessions, redis_client=redis, event_bus=bus)
    finally:
        await bus.stop()
        await redis.aclose()
        await engine.dispose()


@pytest.fixture
async def inventory(
    postgres_server: PostgresServer, redis_server: RedisServer
) -> AsyncIterator[Inventory]:
    app = create_app(SETTINGS)  # its lifespan (real connections) is not run; wire is
    async with inventory_infra(postgres_server, redis_server) as infra, wire(app, SETTINGS, infra):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://inventory") as http:
            yield Inventory(http, infra.bus, infra)


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
    await inventory.pay(held["reservationId"], "5.00")
    path = f"/api/v1/inventory/reservations/{held['reservationId']}"
    assert (await inventory.http.get(path, headers=ALICE)).json()["status"] == "CONFIRMED"


# ---------------------------------------------------- locations and channels
async def _locations(inventory: Inventory, *names: str) -> None:
    for name in names:
        answer = await inventory.http.put(
            f"/api/v1/inventory/locations/{name}", json={"label": name.title()}, headers=ADMIN
        )
        assert answer.status_code == 200, answer.text


async def _stock(inventory: Inventory, product: str, location: str, units: int) -> None:
    answer = await inventory.http.put(
        f"/api/v1/inventory/{product}/stock/{location}", json={"onHand": units}, headers=ADMIN
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["available"] == units


async def test_a_channel_sells_from_its_locations_and_a_line_splits(
    inventory: Inventory,
) -> None:
    product = await inventory.product(stock=0)
    await _locations(inventory, "berlin", "hamburg")
    await _stock(inventory, product, "berlin", 3)
    await _stock(inventory, product, "hamburg", 10)
    channel = {
        "locations": [{"location": "berlin", "safetyStock": 1}, {"location": "hamburg"}],
        "strategy": "priority",
        "split": "lines",
    }
    saved = await inventory.http.put("/api/v1/inventory/channels/web", json=channel, headers=ADMIN)
    assert saved.status_code == 200, saved.text
    assert saved.json() == {"name": "web", **channel, "locations": [
        {"location": "berlin", "safetyStock": 1}, {"location": "hamburg", "safetyStock": 0}
    ]}  # fmt: skip

    listed = await inventory.http.get("/api/v1/products", params={"channel": "web"})
    (shown,) = [p for p in listed.json() if p["id"] == product]
    assert shown["stock"] == 12  # 3 - 1 kept back, + 10
    assert await inventory.stock(product) == 0  # the default location has none

    held = await inventory.reserve({"productId": product, "quantity": 5, "channel": "web"})
    assert held.status_code == 201, held.text
    body = held.json()
    assert sorted((a["location"], a["quantity"]) for a in body["allocations"]) == [
        ("berlin", 2),
        ("hamburg", 3),
    ]
    assert all(a["productId"] == product for a in body["allocations"])
    again = await inventory.http.get(
        f"/api/v1/inventory/reservations/{body['reservationId']}", headers=ALICE
    )
    assert again.json()["allocations"] == body["allocations"]

    levels = await inventory.http.get(f"/api/v1/inventory/{product}/stock", headers=ADMIN)
    assert {row["location"]: (row["available"], row["held"]) for row in levels.json()} == {
        "berlin": (1, 2),
        "default": (0, 0),  # where the product was created, with no stock
        "hamburg": (7, 3),
    }
    cancelled = await inventory.http.post(
        f"/api/v1/inventory/reservations/{body['reservationId']}/cancel", headers=ALICE
    )
    assert cancelled.status_code == 200
    levels = await inventory.http.get(f"/api/v1/inventory/{product}/stock", headers=ADMIN)
    assert {row["location"]: row["available"] for row in levels.json()} == {
        "berlin": 3,
        "default": 0,
        "hamburg": 10,
    }


async def test_unknown_channels_and_locations_are_404s_and_nothing_changes(
    inventory: Inventory,
) -> None:
    product = await inventory.product(stock=2)
    missing = await inventory.reserve({"productId": product, "quantity": 1, "channel": "nope"})
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "channel_not_found"
    listed = await inventory.http.get("/api/v1/products", params={"channel": "nope"})
    assert listed.status_code == 404
    nowhere = await inventory.http.put(
        f"/api/v1/inventory/{product}/stock/atlantis", json={"onHand": 1}, headers=ADMIN
    )
    assert nowhere.status_code == 404
    assert nowhere.json()["error"]["code"] == "location_not_found"
    bad = await inventory.http.put(
        "/api/v1/inventory/channels/web",
        json={"locations": [{"location": "atlantis"}]},
        headers=ADMIN,
    )
    assert bad.status_code == 404
    twice = await inventory.http.put(
        "/api/v1/inventory/channels/web",
        json={"locations": [{"location": "default"}, {"location": "default"}]},
        headers=ADMIN,
    )
    assert twice.status_code == 422
    assert await inventory.stock(product) == 2
    listing = await inventory.http.get("/api/v1/inventory/channels", headers=ADMIN)
    assert listing.json() == []


async def test_locations_and_channels_are_for_admins(inventory: Inventory) -> None:
    name = f"wh-{uuid.uuid4().hex[:6]}"
    for method, path, body in (
        ("PUT", f"/api/v1/inventory/locations/{name}", {"label": "A"}),
        ("GET", "/api/v1/inventory/locations", None),
        ("PUT", "/api/v1/inventory/channels/web", {"locations": [{"location": "default"}]}),
        ("GET", "/api/v1/inventory/channels", None),
    ):
        answer = await inventory.http.request(method, path, json=body, headers=ALICE)
        assert answer.status_code == 403, (method, path)
    default = await inventory.http.put(
        "/api/v1/inventory/locations/default", json={"label": "X"}, headers=ADMIN
    )
    assert default.status_code == 409


async def test_one_shipment_channel_and_a_restock_at_a_location(inventory: Inventory) -> None:
    mug, tee = await inventory.product(stock=0), await inventory.product(stock=0)
    await _locations(inventory, "berlin", "hamburg")
    await _stock(inventory, mug, "berlin", 5)
    await _stock(inventory, tee, "hamburg", 1)
    await _stock(inventory, mug, "hamburg", 1)
    channel = {"locations": [{"location": "berlin"}, {"location": "hamburg"}], "split": "shipment"}
    await inventory.http.put("/api/v1/inventory/channels/parcel", json=channel, headers=ADMIN)
    cart = {"items": [{"productId": mug, "quantity": 1}, {"productId": tee, "quantity": 1}]}
    held = await inventory.reserve({**cart, "channel": "parcel"})
    assert held.status_code == 201, held.text
    assert {a["location"] for a in held.json()["allocations"]} == {"hamburg"}
    short = await inventory.reserve({**cart, "channel": "parcel"})
    assert short.status_code == 409  # berlin has no tee, hamburg no mug left
    restocked = await inventory.http.post(
        f"/api/v1/inventory/{tee}/restock",
        json={"quantity": 2, "location": "berlin"},
        headers=ADMIN,
    )
    assert restocked.status_code == 200, restocked.text
    held = await inventory.reserve({**cart, "channel": "parcel"})
    assert held.status_code == 201, held.text
    assert {a["location"] for a in held.json()["allocations"]} == {"berlin"}


# ---------------------------------------------------------------------- kits
async def test_a_kit_product_sells_what_its_components_make(inventory: Inventory) -> None:
    mug, tea = await inventory.product(stock=5), await inventory.product(stock=3)
    box = await inventory.product(stock=0, price="12.00")
    kit = {"components": [{"productId": mug, "quantity": 2}, {"productId": tea, "quantity": 1}]}
    saved = await inventory.http.put(f"/api/v1/inventory/{box}/kit", json=kit, headers=ADMIN)
    assert saved.status_code == 200, saved.text
    body = saved.json()
    assert (body["productId"], body["version"]) == (box, 1)
    assert [(c["productId"], c["quantity"]) for c in body["components"]] == [(mug, 2), (tea, 1)]
    assert await inventory.stock(box) == 2

    held = await inventory.reserve({"items": [{"productId": box, "quantity": 2}]})
    assert held.status_code == 201, held.text
    reservation = held.json()
    assert [(i["productId"], i["quantity"]) for i in reservation["items"]] == [(box, 2)]
    assert sorted((a["productId"], a["quantity"]) for a in reservation["allocations"]) == sorted(
        [(mug, 4), (tea, 2)]
    )
    assert [await inventory.stock(p) for p in (box, mug, tea)] == [0, 1, 1]
    # A mug alone and a box need 3 mugs together: 1 is left, so nothing is held.
    cart = {"items": [{"productId": box, "quantity": 1}, {"productId": mug, "quantity": 1}]}
    short = await inventory.reserve(cart)
    assert short.status_code == 409
    assert {line["productId"] for line in short.json()["error"]["details"]} == {box, mug}
    read = await inventory.http.get(
        f"/api/v1/inventory/reservations/{reservation['id']}", headers=ALICE
    )
    assert read.json()["allocations"] == reservation["allocations"]

    cancelled = await inventory.http.post(
        f"/api/v1/inventory/reservations/{reservation['id']}/cancel", headers=ALICE
    )
    assert cancelled.status_code == 200
    assert [await inventory.stock(p) for p in (box, mug, tea)] == [2, 5, 3]
    got = await inventory.http.get(f"/api/v1/inventory/{box}/kit", headers=ADMIN)
    assert got.json() == body
    gone = await inventory.http.delete(f"/api/v1/inventory/{box}/kit", headers=ADMIN)
    assert gone.status_code == 204
    assert await inventory.stock(box) == 0
    again = await inventory.http.delete(f"/api/v1/inventory/{box}/kit", headers=ADMIN)
    assert again.status_code == 404
    assert again.json()["error"]["code"] == "kit_not_found"


async def test_bad_kits_are_refused_and_kits_are_for_admins(inventory: Inventory) -> None:
    mug, box, crate = [await inventory.product(stock=1) for _ in range(3)]
    plain = {"components": [{"productId": mug, "quantity": 1}]}
    assert (
        await inventory.http.put(f"/api/v1/inventory/{box}/kit", json=plain, headers=ALICE)
    ).status_code == 403
    assert (
        await inventory.http.get(f"/api/v1/inventory/{box}/kit", headers=ALICE)
    ).status_code == 403
    await inventory.http.put(f"/api/v1/inventory/{box}/kit", json=plain, headers=ADMIN)
    for body, status, code in (
        ({"components": [{"productId": box, "quantity": 1}]}, 409, "kit_nesting"),
        ({"components": [{"productId": crate, "quantity": 1}]}, 400, "invalid_kit"),
        ({"components": [{"productId": mug, "quantity": 1}] * 2}, 400, "invalid_kit"),
        ({"components": [{"productId": str(uuid.uuid4()), "quantity": 1}]}, 404, None),
        ({"components": []}, 422, None),
        ({"components": [{"productId": mug, "quantity": 0}]}, 422, None),
    ):
        path = f"/api/v1/inventory/{crate}/kit"
        answer = await inventory.http.put(path, json=body, headers=ADMIN)
        assert answer.status_code == status, (body, answer.text)
        if code is not None:
            assert answer.json()["error"]["code"] == code
    made_of_kit = await inventory.http.put(
        f"/api/v1/inventory/{mug}/kit",
        json={"components": [{"productId": crate, "quantity": 1}]},
        headers=ADMIN,
    )
    assert made_of_kit.status_code == 409  # mug is the box's component
    assert (
        await inventory.http.get(f"/api/v1/inventory/{crate}/kit", headers=ADMIN)
    ).status_code == 404


# ---------------------------------------------------------------- backorders
async def test_a_backorder_cap_sells_beyond_stock_and_marks_the_units_owed(
    inventory: Inventory,
) -> None:
    product = await inventory.product(stock=2)
    path = f"/api/v1/inventory/{product}/backorder/default"
    assert (await inventory.http.put(path, json={"cap": 3}, headers=ALICE)).status_code == 403
    capped = await inventory.http.put(path, json={"cap": 3}, headers=ADMIN)
    assert capped.status_code == 200, capped.text
    assert capped.json() == {
        "location": "default", "available": 2, "held": 0, "sold": 0, "backorder": 3,
        "backordered": 0,
    }  # fmt: skip
    assert await inventory.stock(product) == 5
    held = await inventory.reserve({"productId": product, "quantity": 4})
    assert held.status_code == 201, held.text
    [allocation] = held.json()["allocations"]
    assert (allocation["quantity"], allocation["backordered"]) == (4, 2)
    over = await inventory.reserve({"productId": product, "quantity": 2})
    assert over.status_code == 409
    assert over.json()["error"]["details"][0]["available"] == 1
    lower = await inventory.http.put(path, json={"cap": 1}, headers=ADMIN)
    assert lower.status_code == 409  # 2 are owed
    assert lower.json()["error"]["code"] == "below_owed"
    levels = await inventory.http.get(f"/api/v1/inventory/{product}/stock", headers=ADMIN)
    [level] = levels.json()
    assert (level["available"], level["backordered"], level["backorder"]) == (-2, 2, 3)
    bad = await inventory.http.put(path, json={"cap": -1}, headers=ADMIN)
    assert bad.status_code == 422


# ----------------------------------------------------------- purchase limits
async def test_a_purchase_limit_stops_a_shopper_not_the_others(inventory: Inventory) -> None:
    product = await inventory.product(stock=50)
    path = f"/api/v1/inventory/{product}/limit"
    body = {"quantity": 2, "windowSeconds": 3600}
    assert (await inventory.http.put(path, json=body, headers=ALICE)).status_code == 403
    saved = await inventory.http.put(path, json=body, headers=ADMIN)
    assert saved.status_code == 200, saved.text
    assert saved.json() == {"productId": product, "quantity": 2, "windowSeconds": 3600}
    assert (await inventory.reserve({"productId": product, "quantity": 2})).status_code == 201
    limited = await inventory.reserve({"productId": product, "quantity": 1})
    assert limited.status_code == 409
    error = limited.json()["error"]
    assert error["code"] == "purchase_limit"
    [over] = error["details"]
    assert (over["productId"], over["limit"], over["used"], over["requested"]) == (
        product, 2, 2, 1,
    )  # fmt: skip
    assert (await inventory.reserve({"productId": product, "quantity": 2}, BOB)).status_code == 201
    assert await inventory.stock(product) == 46
    off = await inventory.http.put(path, json={"quantity": 0, "windowSeconds": 1}, headers=ADMIN)
    assert off.json() == {"productId": product, "quantity": 0, "windowSeconds": None}
    assert (await inventory.reserve({"productId": product, "quantity": 5})).status_code == 201
    read = await inventory.http.get(path, headers=ADMIN)
    assert read.json()["quantity"] == 0
    bad = await inventory.http.put(path, json={"quantity": 1, "windowSeconds": 0}, headers=ADMIN)
    assert bad.status_code == 422


# ------------------------------------------------------------------ amending
async def test_a_shopper_edits_a_pending_cart_without_losing_the_last_unit(
    inventory: Inventory,
) -> None:
    last, more = await inventory.product(stock=1), await inventory.product(stock=5)
    held = await inventory.reserve({"items": [{"productId": last, "quantity": 1}]})
    reservation = held.json()["id"]
    path = f"/api/v1/inventory/reservations/{reservation}"
    cart = {"items": [{"productId": last, "quantity": 1}, {"productId": more, "quantity": 3}]}
    assert (await inventory.http.put(path, json=cart, headers=BOB)).status_code == 404
    amended = await inventory.http.put(path, json=cart, headers={**ALICE, "Idempotency-Key": "e1"})
    assert amended.status_code == 200, amended.text
    body = amended.json()
    assert (body["id"], body["status"]) == (reservation, "PENDING")
    assert [(i["productId"], i["quantity"]) for i in body["items"]] == [(last, 1), (more, 3)]
    assert [await inventory.stock(p) for p in (last, more)] == [0, 2]
    # A competitor never got the last unit meanwhile.
    assert (await inventory.reserve({"productId": last, "quantity": 1}, BOB)).status_code == 409
    too_many = {"items": [{"productId": more, "quantity": 9}]}
    short = await inventory.http.put(path, json=too_many, headers=ALICE)
    assert short.status_code == 409
    assert short.json()["error"]["code"] == "out_of_stock"
    assert [await inventory.stock(p) for p in (last, more)] == [0, 2]  # nothing changed
    again = await inventory.http.put(path, json=cart, headers={**ALICE, "Idempotency-Key": "e1"})
    assert again.json()["items"] == body["items"]
    await inventory.http.post(f"{path}/cancel", headers=ALICE)
    late = await inventory.http.put(path, json=cart, headers=ALICE)
    assert late.status_code == 409
    assert late.json()["error"]["code"] == "not_pending"


# -------------------------------------------------------------------- orders
async def test_a_paid_reservation_is_an_order_its_owner_reads_and_an_admin_ships_in_parts(
    inventory: Inventory,
) -> None:
    mug = await inventory.product(stock=5, price="2.50")
    held = (await inventory.reserve({"productId": mug, "quantity": 3})).json()
    order_id = held["reservationId"]
    paid = await inventory.pay(order_id, "7.50")
    await inventory.bus.publish(Envelope.wrap(paid.data, source="test"))  # redelivered
    await inventory.bus.drain()
    async with inventory.infra.engine.connect() as conn:
        created = (
            await conn.scalars(
                select(OutboxMessage.event_id).where(OutboxMessage.key == order_id)
                .where(OutboxMessage.event_type == "order.created")
            )
        ).all()  # fmt: skip
    assert created == [f"order.created:{order_id}"]  # in the outcome's transaction, once

    path = f"/api/v1/orders/{order_id}"
    order = (await inventory.http.get(path, headers=ALICE)).json()
    assert order["status"] == "OPEN"
    [line] = order["items"]
    assert (line["productId"], line["location"], line["quantity"], line["committed"]) == (
        mug, "default", 3, 3,
    )  # fmt: skip
    listed = (await inventory.http.get("/api/v1/orders", headers=ALICE)).json()
    assert [o["id"] for o in listed] == [order_id]
    assert (await inventory.http.get("/api/v1/orders", headers=BOB)).json() == []
    assert (await inventory.http.get(path, headers=BOB)).status_code == 404  # not Bob's

    ship = f"{path}/shipments"
    one = {"shipmentId": "parcel-1", "items": [{"productId": mug, "quantity": 1}]}
    assert (await inventory.http.post(ship, json=one, headers=ALICE)).status_code == 403
    first = await inventory.http.post(ship, json=one, headers=ADMIN)
    assert first.status_code == 201, first.text
    assert first.json()["items"] == [
        {"productId": mug, "sku": line["sku"], "location": "default", "quantity": 1}
    ]
    again = await inventory.http.post(ship, json=one, headers=ADMIN)  # a retry
    assert (again.status_code, again.json()) == (201, first.json())
    other = {"shipmentId": "parcel-1", "items": [{"productId": mug, "quantity": 2}]}
    conflict = await inventory.http.post(ship, json=other, headers=ADMIN)
    assert (conflict.status_code, conflict.json()["error"]["code"]) == (409, "shipment_conflict")
    too_many = {"shipmentId": "parcel-2", "items": [{"productId": mug, "quantity": 3}]}
    over = await inventory.http.post(ship, json=too_many, headers=ADMIN)
    assert (over.status_code, over.json()["error"]["code"]) == (409, "over_fulfilment")
    assert over.json()["error"]["details"] == [
        {"productId": mug, "location": "default", "committed": 2, "requested": 3}
    ]
    rest = {"shipmentId": "parcel-2", "items": [{"productId": mug, "quantity": 2}]}
    assert (await inventory.http.post(ship, json=rest, headers=ADMIN)).status_code == 201
    done = (await inventory.http.get(path, headers=ALICE)).json()
    assert (done["status"], done["items"][0]["shipped"], done["items"][0]["committed"]) == (
        "FULFILLED", 3, 0,
    )  # fmt: skip
    unknown = await inventory.http.post("/api/v1/orders/nope/shipments", json=one, headers=ADMIN)
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "order_not_found")


async def test_an_admin_cancels_what_did_not_ship_and_its_units_are_on_sale_again_once(
    inventory: Inventory,
) -> None:
    mug = await inventory.product(stock=4, price="2.50")
    held = (await inventory.reserve({"productId": mug, "quantity": 4})).json()
    order_id = held["reservationId"]
    await inventory.pay(order_id, "10.00")
    path = f"/api/v1/orders/{order_id}"
    one = {"shipmentId": "parcel-1", "items": [{"productId": mug, "quantity": 1}]}
    assert (await inventory.http.post(f"{path}/shipments", json=one, headers=ADMIN)).is_success
    assert await inventory.stock(mug) == 0

    cancel = f"{path}/cancellations"
    part = {"cancellationId": "ticket-1", "items": [{"productId": mug, "quantity": 2}]}
    assert (await inventory.http.post(cancel, json=part, headers=ALICE)).status_code == 403
    first = await inventory.http.post(cancel, json=part, headers=ADMIN)
    assert first.status_code == 201, first.text
    assert first.json()["items"] == [
        {"productId": mug, "sku": first.json()["items"][0]["sku"], "location": "default",
         "quantity": 2}
    ]  # fmt: skip
    assert first.json()["refunded"] == "5.00"  # 2 of the 4 units the 10.00 paid for
    assert first.json()["refundId"] is not None
    again = await inventory.http.post(cancel, json=part, headers=ADMIN)  # a retry
    assert (again.status_code, again.json()) == (201, first.json())
    assert await inventory.stock(mug) == 2  # back on sale, once
    other = {"cancellationId": "ticket-1", "items": [{"productId": mug, "quantity": 1}]}
    conflict = await inventory.http.post(cancel, json=other, headers=ADMIN)
    assert (conflict.status_code, conflict.json()["error"]["code"]) == (
        409,
        "cancellation_conflict",
    )
    too_many = {"cancellationId": "ticket-2", "items": [{"productId": mug, "quantity": 2}]}
    over = await inventory.http.post(cancel, json=too_many, headers=ADMIN)
    assert (over.status_code, over.json()["error"]["code"]) == (409, "over_cancellation")
    assert over.json()["error"]["details"] == [
        {"productId": mug, "location": "default", "committed": 1, "requested": 2}
    ]
    rest = await inventory.http.post(cancel, json={"cancellationId": "ticket-3"}, headers=ADMIN)
    assert rest.status_code == 201, rest.text
    assert [item["quantity"] for item in rest.json()["items"]] == [1]
    assert rest.json()["refunded"] == "2.50"
    order = (await inventory.http.get(path, headers=ALICE)).json()
    [line] = order["items"]
    assert (order["status"], line["shipped"], line["cancelled"], line["committed"]) == (
        "FULFILLED", 1, 3, 0,
    )  # fmt: skip
    assert line["amount"] == "10.00"
    refunds = await RefundService(inventory.infra.sessions, None).for_reservation(order_id)
    assert sorted(r.amount for r in refunds) == [Decimal("2.50"), Decimal("5.00")]
    assert await inventory.stock(mug) == 3
    none_left = await inventory.http.post(
        cancel, json={"cancellationId": "ticket-4"}, headers=ADMIN
    )
    assert (none_left.status_code, none_left.json()["error"]["code"]) == (409, "over_cancellation")
    bad = await inventory.http.post(cancel, json={"cancellationId": "no spaces"}, headers=ADMIN)
    assert bad.status_code == 422


async def test_an_admin_receives_a_return_once_restocked_as_each_item_says_and_refunded(
    inventory: Inventory,
) -> None:
    mug = await inventory.product(stock=3, price="4.00")
    order_id = (await inventory.reserve({"productId": mug, "quantity": 3})).json()["reservationId"]
    await inventory.pay(order_id, "12.00")
    path = f"/api/v1/orders/{order_id}"
    ship = {"shipmentId": "parcel-1", "items": [{"productId": mug, "quantity": 3}]}
    assert (await inventory.http.post(f"{path}/shipments", json=ship, headers=ADMIN)).is_success
    returns = f"{path}/returns"
    body = {
        "returnId": "rma-1",
        "items": [
            {"productId": mug, "quantity": 1, "restock": "RESELL"},
            {"productId": mug, "quantity": 1, "restock": "DAMAGED"},
        ],
    }
    assert (await inventory.http.post(returns, json=body, headers=ALICE)).status_code == 403
    made = await inventory.http.post(returns, json=body, headers=ADMIN)
    assert made.status_code == 201, made.text
    assert [(i["quantity"], i["restock"]) for i in made.json()["items"]] == [
        (1, "DAMAGED"),
        (1, "RESELL"),
    ]
    assert made.json()["refunded"] == "8.00"
    again = await inventory.http.post(returns, json=body, headers=ADMIN)
    assert (again.status_code, again.json()) == (201, made.json())
    assert await inventory.stock(mug) == 1  # the resold one, once; the damaged one is not for sale
    too_many = {
        "returnId": "rma-2",
        "items": [{"productId": mug, "quantity": 2, "restock": "NONE"}],
    }
    over = await inventory.http.post(returns, json=too_many, headers=ADMIN)
    assert (over.status_code, over.json()["error"]["code"]) == (409, "over_return")
    assert over.json()["error"]["details"] == [
        {"productId": mug, "location": "default", "committed": 1, "requested": 2}
    ]
    other = {"returnId": "rma-1", "items": [{"productId": mug, "quantity": 1, "restock": "NONE"}]}
    conflict = await inventory.http.post(returns, json=other, headers=ADMIN)
    assert (conflict.status_code, conflict.json()["error"]["code"]) == (409, "return_conflict")
    bad = {"returnId": "rma-3", "items": [{"productId": mug, "quantity": 1, "restock": "LOST"}]}
    assert (await inventory.http.post(returns, json=bad, headers=ADMIN)).status_code == 422
    [line] = (await inventory.http.get(path, headers=ALICE)).json()["items"]
    assert (line["returned"], line["damaged"]) == (2, 1)


async def test_admins_read_the_stock_journal_of_an_order_from_hold_to_return(
    inventory: Inventory,
) -> None:
    mug = await inventory.product(stock=3, price="4.00")
    restocked = await inventory.http.post(
        f"/api/v1/inventory/{mug}/restock", json={"quantity": 2}, headers=ADMIN
    )
    assert restocked.is_success, restocked.text
    order_id = (await inventory.reserve({"productId": mug, "quantity": 3})).json()["reservationId"]
    await inventory.pay(order_id, "12.00")
    path = f"/api/v1/orders/{order_id}"
    ship = {"shipmentId": "parcel-9", "items": [{"productId": mug, "quantity": 2}]}
    assert (await inventory.http.post(f"{path}/shipments", json=ship, headers=ADMIN)).is_success
    back = {"returnId": "rma-9", "items": [{"productId": mug, "quantity": 1, "restock": "RESELL"}]}
    assert (await inventory.http.post(f"{path}/returns", json=back, headers=ADMIN)).is_success

    journal = "/api/v1/inventory/journal"
    assert (await inventory.http.get(journal, headers=ALICE)).status_code == 403
    answer = await inventory.http.get(journal, params={"productId": mug}, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    rows = answer.json()
    assert [(r["reason"], r["from"], r["to"], r["quantity"]) for r in rows] == [
        ("set", None, "available", 3),
        ("restock", None, "available", 2),
        ("reserve", "available", "held", 3),
        ("confirm", "held", "committed", 3),
        ("ship", "committed", "shipped", 2),
        ("return", "shipped", "available", 1),
    ]
    assert {r["productId"] for r in rows} == {mug}
    assert [r["actor"] for r in rows] == ["admin:admin-1", "admin:admin-1", "alice", "alice",
                                          "admin:admin-1", "admin:admin-1"]  # fmt: skip
    assert [r["reference"] for r in rows[2:]] == [order_id, order_id, "parcel-9", "rma-9"]
    assert rows[-1]["after"] == {
        "available": 3, "held": 0, "committed": 1, "shipped": 1, "damaged": 0,
        "writtenOff": 0, "onHand": 4,
    }  # fmt: skip
    assert await inventory.stock(mug) == rows[-1]["after"]["available"]
    # Filters and pages.
    of_order = await inventory.http.get(journal, params={"orderId": order_id}, headers=ADMIN)
    assert [r["reason"] for r in of_order.json()] == ["confirm", "ship", "return"]
    page = await inventory.http.get(
        journal, params={"productId": mug, "after": rows[1]["id"], "limit": 2}, headers=ADMIN
    )
    assert [r["id"] for r in page.json()] == [rows[2]["id"], rows[3]["id"]]
    bad = await inventory.http.get(journal, params={"reason": "stolen"}, headers=ADMIN)
    assert bad.status_code == 422
    unknown = await inventory.http.get(
        journal, params={"productId": str(uuid.uuid4())}, headers=ADMIN
    )
    assert unknown.status_code == 404


async def test_admins_set_a_low_stock_threshold_that_the_watch_announces(
    inventory: Inventory,
) -> None:
    mug = await inventory.product(stock=5)
    path = f"/api/v1/inventory/{mug}/alert"
    assert (await inventory.http.put(path, json={"low": 2}, headers=ALICE)).status_code == 403
    made = await inventory.http.put(path, json={"low": 2}, headers=ADMIN)
    assert made.status_code == 200, made.text
    assert made.json() == {"productId": mug, "location": "default", "low": 2}
    for bad in ({"low": -1}, {"low": "2"}, {"low": 2, "extra": 1}, {}):
        assert (await inventory.http.put(path, json=bad, headers=ADMIN)).status_code == 422
    away = await inventory.http.put(path, json={"low": 2, "location": "moon"}, headers=ADMIN)
    assert (away.status_code, away.json()["error"]["code"]) == (404, "location_not_found")
    assert (await inventory.reserve({"productId": mug, "quantity": 3})).status_code == 201
    services = inventory.http._transport.app.state.inventory  # type: ignore[attr-defined]
    assert await services.watch.run_once() >= 2
    async with inventory.infra.sessions() as session:
        kinds = (
            await session.scalars(
                select(OutboxMessage.event_type)
                .where(OutboxMessage.event_type.like("stock.%"))
                .order_by(OutboxMessage.id)
            )
        ).all()
    assert kinds == ["stock.adjusted", "stock.low"]
    cleared = await inventory.http.put(path, json={"low": None}, headers=ADMIN)
    assert cleared.json()["low"] is None


async def test_a_return_received_at_another_warehouse_goes_on_sale_there(
    inventory: Inventory,
) -> None:
    east = f"east-{uuid.uuid4().hex[:6]}"
    made = await inventory.http.put(
        f"/api/v1/inventory/locations/{east}", json={"label": "East"}, headers=ADMIN
    )
    assert made.is_success, made.text
    mug = await inventory.product(stock=2, price="4.00")
    order_id = (await inventory.reserve({"productId": mug, "quantity": 2})).json()["reservationId"]
    await inventory.pay(order_id, "8.00")
    path = f"/api/v1/orders/{order_id}"
    ship = {"shipmentId": "parcel-e", "items": [{"productId": mug, "quantity": 2}]}
    assert (await inventory.http.post(f"{path}/shipments", json=ship, headers=ADMIN)).is_success
    item = {"productId": mug, "quantity": 1, "restock": "RESELL", "restockAt": east}
    for bad in (
        {**item, "restock": "DAMAGED"},  # only resold units go on sale elsewhere
        {**item, "restockAt": "no such place!"},
    ):
        answer = await inventory.http.post(
            f"{path}/returns", json={"returnId": "rma-x", "items": [bad]}, headers=ADMIN
        )
        assert answer.status_code == 422, answer.text
    unknown = await inventory.http.post(
        f"{path}/returns",
        json={"returnId": "rma-x", "items": [{**item, "restockAt": "nowhere"}]},
        headers=ADMIN,
    )
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "location_not_found")
    received = await inventory.http.post(
        f"{path}/returns", json={"returnId": "rma-e", "items": [item]}, headers=ADMIN
    )
    assert received.status_code == 201, received.text
    assert received.json()["items"][0]["restockAt"] == east
    levels = {
        level["location"]: level
        for level in (
            await inventory.http.get(f"/api/v1/inventory/{mug}/stock", headers=ADMIN)
        ).json()
    }
    assert (levels[east]["available"], levels["default"]["available"]) == (1, 0)
    assert levels["default"]["sold"] == 1  # the other mug, still out with the customer
