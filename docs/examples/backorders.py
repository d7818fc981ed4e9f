"""Selling a preorder beyond the stock, up to a cap: runs as is, with no server (fakeredis)."""

import asyncio

from fakeredis import FakeAsyncRedis

from commercekit.errors import OutOfStock, StockConflict
from commercekit.reservations import RedisReservationStore


async def main() -> None:
    store = RedisReservationStore(FakeAsyncRedis())
    await store.set_stock("CONSOLE", 2)

    # Up to 3 more may be sold before the next delivery arrives.
    level = await store.set_backorder("CONSOLE", 3)
    print(level.sellable)  # 5

    hold = await store.reserve([("CONSOLE", 4)], ttl=900, owner="user-42")
    print(hold.allocations[0].backordered)  # 2
    print((await store.stock("CONSOLE")).available)  # -2

    try:
        await store.reserve([("CONSOLE", 2)], ttl=900, owner="user-7")
    except OutOfStock as exc:
        print(exc)  # out of stock: CONSOLE (wanted 2, available 1)

    # The cap cannot go below what is owed; a delivery covers it.
    try:
        await store.set_backorder("CONSOLE", 1)
    except StockConflict:
        print("2 are owed")  # 2 are owed
    level = await store.restock("CONSOLE", 10)
    print(level.available, level.backordered)  # 8 0


asyncio.run(main())
