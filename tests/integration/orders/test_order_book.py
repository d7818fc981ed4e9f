"""Orders on SQLite and real PostgreSQL: opened once, shipped in parts, each shipment once."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest
from fakeredis import FakeAsyncRedis
from sqlalchemy.ext.asyncio import AsyncEngine

from commercekit.errors import (
    InvalidRequest,
    OrderNotFound,
    OverFulfilment,
    OverShipped,
    ShipmentConflict,
)
from commercekit.orders import OrderBook, OrderStatus, ShipmentLine
from commercekit.reservations import (
    Allocation,
    DurableReservations,
    RedisReservationStore,
    Reservation,
    ReservationLedger,
    ReservationLine,
    ReservationStatus,
)

NOW = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)


@pytest.fixture
def book(engine: AsyncEngine) -> OrderBook:
    return OrderBook(engine)


def confirmed(*lines: tuple[str, int], allocations: tuple[Allocation, ...] = ()) -> Reservation:
    return Reservation(
        id=f"res_{uuid.uuid4().hex}",
        status=ReservationStatus.CONFIRMED,
        owner="alice",
        lines=tuple(ReservationLine(sku=sku, quantity=n) for sku, n in lines),
        created_at=NOW,
        updated_at=NOW,
        expires_at=NOW + dt.timedelta(minutes=15),
        allocations=allocations,
    )


async def test_an_order_commits_the_reservations_units_once_however_often_it_is_opened(
    book: OrderBook,
) -> None:
    reservation = confirmed(("MUG", 3), ("TEA", 1))
    order = await book.open(reservation, now=NOW)
    assert (order.id, order.owner, order.status) == (reservation.id, "alice", OrderStatus.OPEN)
    assert [(ln.sku, ln.location, ln.quantity, ln.committed) for ln in order.lines] == [
        ("MUG", "default", 3, 3),
        ("TEA", "default", 1, 1),
    ]
    assert await book.open(reservation) == order
    assert await book.get(order.id) == order
    assert await book.committed("MUG") == 3
    assert await book.of_owner("alice") == [order]
    assert await book.of_owner("bob") == []


async def test_a_kit_or_a_channel_order_holds_what_was_allocated_where(book: OrderBook) -> None:
    reservation = confirmed(
        ("GIFT-BOX", 2),
        allocations=(
            Allocation(sku="MUG", location="berlin", quantity=2),
            Allocation(sku="TEA", location="berlin", quantity=1),
            Allocation(sku="TEA", location="hamburg", quantity=1),
        ),
    )
    order = await book.open(reservation)
    assert [(ln.sku, ln.location, ln.quantity) for ln in order.lines] == [
        ("MUG", "berlin", 2), ("TEA", "berlin", 1), ("TEA", "hamburg", 1),
    ]  # fmt: skip
    with pytest.raises(InvalidRequest, match="name the location"):
        await book.ship(order.id, "p-1", [("TEA", 1)])
    shipment = await book.ship(order.id, "p-1", [("TEA", 1, "hamburg"), ("MUG", 2)])
    assert shipment.lines == (
        ShipmentLine(sku="MUG", location="berlin", quantity=2),
        ShipmentLine(sku="TEA", location="hamburg", quantity=1),
    )
    assert await book.committed("TEA", "berlin") == 1
    assert await book.committed("TEA", "hamburg") == 0


async def test_ship_one_of_three_now_and_two_later(book: OrderBook) -> None:
    order = await book.open(confirmed(("MUG", 3)))
    first = await book.ship(order.id, "parcel-1", [("MUG", 1)], now=NOW)
    assert first.lines == (ShipmentLine(sku="MUG", location="default", quantity=1),)
    partly = await book.get(order.id)
    assert (partly.status, partly.committed) == (OrderStatus.PARTIALLY_FULFILLED, 2)
    await book.ship(order.id, "parcel-2", [("MUG", 1), ("MUG", 1)])  # lines add up
    done = await book.get(order.id)
    assert (done.status, done.committed, done.lines[0].shipped) == (OrderStatus.FULFILLED, 0, 3)
    assert await book.shipment("parcel-1") == first


async def test_a_shipment_is_made_once_per_id_and_an_id_serves_one_shipment(
    book: OrderBook,
) -> None:
    order = await book.open(confirmed(("MUG", 3)))
    other = await book.open(confirmed(("MUG", 3)))
    made = await book.ship(order.id, "parcel-1", [("MUG", 2)])
    assert await book.ship(order.id, "parcel-1", [("MUG", 2)]) == made  # a retry
    assert (await book.get(order.id)).committed == 1
    with pytest.raises(ShipmentConflict):
        await book.ship(order.id, "parcel-1", [("MUG", 1)])
    with pytest.raises(ShipmentConflict):
        await book.ship(other.id, "parcel-1", [("MUG", 2)])
    assert (await book.get(other.id)).committed == 3


async def test_more_than_the_order_commits_is_refused_and_nothing_ships(book: OrderBook) -> None:
    order = await book.open(confirmed(("MUG", 3), ("TEA", 1)))
    await book.ship(order.id, "parcel-1", [("MUG", 2)])
    with pytest.raises(OverFulfilment) as refused:
        await book.ship(order.id, "parcel-2", [("MUG", 2), ("TEA", 1), ("JAM", 1)])
    assert refused.value.over == (
        OverShipped(sku="JAM", location="default", committed=0, requested=1),
        OverShipped(sku="MUG", location="default", committed=1, requested=2),
    )
    after = await book.get(order.id)
    assert [ln.shipped for ln in after.lines] == [2, 0]
    assert await book.shipment("parcel-2") is None


@pytest.mark.parametrize(
    "lines",
    [[], [("MUG", 0)], [("MUG", -1)], [("MUG", True)], [("bad sku!", 1)], [("MUG",)], ["MUG"]],
)
async def test_bad_shipments_are_refused(book: OrderBook, lines: list[object]) -> None:
    order = await book.open(confirmed(("MUG", 3)))
    with pytest.raises(InvalidRequest):
        await book.ship(order.id, "parcel-1", lines)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest):
        await book.ship(order.id, "not an id", [("MUG", 1)])
    assert (await book.get(order.id)).committed == 3


async def test_unknown_orders_and_unconfirmed_reservations(book: OrderBook) -> None:
    with pytest.raises(OrderNotFound):
        await book.get("res_nope")
    with pytest.raises(OrderNotFound):
        await book.ship("res_nope", "parcel-1", [("MUG", 1)])
    pending = confirmed(("MUG", 1)).model_copy(update={"status": ReservationStatus.PENDING})
    with pytest.raises(InvalidRequest, match="CONFIRMED"):
        await book.open(pending)


async def test_concurrent_shipments_never_ship_more_than_the_order_commits(
    book: OrderBook,
) -> None:
    order = await book.open(confirmed(("MUG", 10)))
    results = await asyncio.gather(
        *(book.ship(order.id, f"parcel-{i}", [("MUG", 1)]) for i in range(25)),
        return_exceptions=True,
    )
    shipped = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, OverFulfilment)]
    assert (len(shipped), len(refused)) == (10, 15)
    final = await book.get(order.id)
    assert (final.status, final.lines[0].shipped) == (OrderStatus.FULFILLED, 10)


async def test_one_shipment_id_redelivered_at_once_ships_once(book: OrderBook) -> None:
    order = await book.open(confirmed(("MUG", 10)))
    results = await asyncio.gather(
        *(book.ship(order.id, "parcel-1", [("MUG", 3)]) for _ in range(12))
    )
    assert len(set(results)) == 1
    assert (await book.get(order.id)).lines[0].shipped == 3


async def test_a_paid_reservation_becomes_an_order(engine: AsyncEngine, book: OrderBook) -> None:
    client = FakeAsyncRedis()
    reservations = DurableReservations(
        RedisReservationStore(client, guarded=True), ReservationLedger(engine)
    )
    await reservations.start()
    await reservations.set_stock("MUG", 5)
    held = await reservations.reserve([("MUG", 3)], ttl=60, owner="alice")
    order = await book.open(await reservations.confirm(held.id))
    await book.ship(order.id, "parcel-1", [("MUG", 1)])
    level = await reservations.stock("MUG")
    # The store counts the order's units sold; the book, which of them are still here.
    assert (level.available, level.sold) == (2, 3)
    assert await book.committed("MUG") == 2
    await client.aclose()


async def test_an_owners_orders_come_by_page_each_with_its_own_lines(book: OrderBook) -> None:
    opened = []
    for minutes, lines in enumerate([(("MUG", 1),), (("TEA", 2), ("CUP", 1)), (("PEN", 4),)]):
        reservation = confirmed(*lines)
        opened.append(await book.open(reservation, now=NOW + dt.timedelta(minutes=minutes)))
    await book.open(confirmed(("MUG", 9)).model_copy(update={"owner": "bob"}))
    first, second = await book.of_owner("alice", limit=2)
    assert [first, second] == opened[:2]
    assert [(ln.sku, ln.quantity) for ln in second.lines] == [("CUP", 1), ("TEA", 2)]
    assert await book.of_owner("alice", limit=2, offset=2) == opened[2:]
    assert await book.of_owner("alice", offset=3) == []
