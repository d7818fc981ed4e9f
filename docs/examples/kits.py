"""A gift box sold as a kit of mugs and tea: runs as is, with no server (fakeredis)."""

import asyncio

from fakeredis import FakeAsyncRedis

from commercekit.errors import OutOfStock
from commercekit.reservations import RedisReservationStore


async def main() -> None:
    store = RedisReservationStore(FakeAsyncRedis())
    await store.set_stock("MUG", 5)
    await store.set_stock("TEA", 3)

    # One gift box is two mugs and one tea; it keeps no stock of its own.
    box = await store.define_kit("GIFT-BOX", [("MUG", 2), ("TEA", 1)])
    print(box.version)  # 1
    print(await store.available(["GIFT-BOX", "MUG"]))  # {'GIFT-BOX': 2, 'MUG': 5}

    # The cart keeps its lines as asked; the units held are the components.
    hold = await store.reserve([("GIFT-BOX", 2)], ttl=900, owner="user-42")
    print([(line.sku, line.quantity) for line in hold.lines])  # [('GIFT-BOX', 2)]
    print(sorted((a.sku, a.quantity) for a in hold.allocations))  # [('MUG', 4), ('TEA', 2)]

    # A line sharing a component with a kit is summed with it: 1 mug is left, not 5.
    try:
        await store.reserve([("GIFT-BOX", 1), ("MUG", 1)], ttl=900, owner="user-7")
    except OutOfStock as exc:
        print(exc)  # out of stock: GIFT-BOX (wanted 1, available 0), MUG (wanted 1, available 1)

    # Redefined, the kit's version goes up; the hold above returns what it took.
    print((await store.define_kit("GIFT-BOX", [("MUG", 1), ("TEA", 1)])).version)  # 2
    await store.release(hold.id)
    print(await store.available(["GIFT-BOX"]))  # {'GIFT-BOX': 3}


asyncio.run(main())
