"""A shopper edits a cart during a drop without losing the last unit: no server (fakeredis)."""

import asyncio

from fakeredis import FakeAsyncRedis

from commercekit.errors import OutOfStock
from commercekit.reservations import RedisReservationStore


async def main() -> None:
    store = RedisReservationStore(FakeAsyncRedis())
    await store.set_stock("JACKET", 1)  # the last one
    await store.set_stock("SCARF", 3)
    hold = await store.reserve([("JACKET", 1)], ttl=900, owner="user-42")

    # Add two scarves: the jacket stays held throughout.
    hold = await store.amend(hold.id, [("JACKET", 1), ("SCARF", 2)])
    print([(line.sku, line.quantity) for line in hold.lines])  # [('JACKET', 1), ('SCARF', 2)]

    # A competitor cannot take the jacket meanwhile.
    try:
        await store.reserve([("JACKET", 1)], ttl=900, owner="user-7")
    except OutOfStock:
        print("the jacket is held")  # the jacket is held

    # Too many scarves: nothing changes.
    try:
        await store.amend(hold.id, [("JACKET", 1), ("SCARF", 5)])
    except OutOfStock as exc:
        print(exc)  # out of stock: SCARF (wanted 5, available 3)
    print((await store.get(hold.id)).total_quantity)  # 3

    # One scarf fewer: one goes back.
    await store.amend(hold.id, [("JACKET", 1), ("SCARF", 1)])
    print((await store.stock("SCARF")).available)  # 2


asyncio.run(main())
