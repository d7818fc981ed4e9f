"""A paid cart becomes an order, shipped in two parcels, one unit cancelled: runs as is."""

import asyncio
import tempfile
from pathlib import Path

from fakeredis import FakeAsyncRedis
from sqlalchemy.ext.asyncio import create_async_engine

from commercekit.errors import OverFulfilment
from commercekit.orders import OrderBook
from commercekit.reservations import DurableReservations, RedisReservationStore, ReservationLedger
from commercekit.sql import migrate


async def main(folder: Path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{folder / 'shop.sqlite3'}")
    await migrate(engine)
    store = RedisReservationStore(FakeAsyncRedis(), guarded=True)
    reservations = DurableReservations(store, ReservationLedger(engine))
    await reservations.start()
    await reservations.set_stock("MUG", 10)
    book = OrderBook(engine, stock=reservations)  # fakeredis and SQLite here

    held = await reservations.reserve([("MUG", 3)], ttl=900, owner="user-42")
    order = await book.open(await reservations.confirm(held.id))  # paid
    print(order.status, order.committed)  # OPEN 3

    await book.ship(order.id, "parcel-1", [("MUG", 1)])
    await book.ship(order.id, "parcel-1", [("MUG", 1)])  # a retry: shipped once
    print((await book.get(order.id)).status)  # PARTIALLY_FULFILLED
    try:
        await book.ship(order.id, "parcel-2", [("MUG", 3)])
    except OverFulfilment as exc:
        print(exc.over[0].committed)  # 2
    await book.cancel(order.id, "ticket-7", [("MUG", 1)])  # the shopper changed their mind
    await book.cancel(order.id, "ticket-7", [("MUG", 1)])  # a retry: cancelled once
    # Of 10 mugs, 3 were sold and 1 of them is back on sale, once.
    print((await reservations.stock("MUG")).available)  # 8
    await book.ship(order.id, "parcel-2", [("MUG", 1)])
    print((await book.get(order.id)).status)  # FULFILLED
    await engine.dispose()


with tempfile.TemporaryDirectory() as folder:
    asyncio.run(main(Path(folder)))
