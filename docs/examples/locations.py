"""Stock in two warehouses sold through one channel: runs as is, with no server (fakeredis)."""

import asyncio

from fakeredis import FakeAsyncRedis

from commercekit.errors import OutOfStock
from commercekit.reservations import (
    Channel,
    ChannelLocation,
    RedisReservationStore,
    Split,
    Strategy,
)


async def main() -> None:
    store = RedisReservationStore(FakeAsyncRedis())
    await store.set_stock("MUG", 3, location="berlin")
    await store.set_stock("MUG", 10, location="hamburg")
    await store.set_stock("TEE", 2, location="hamburg")

    # The web shop sells from Berlin first, keeping 1 mug back there for the shop floor.
    web = Channel("web", [ChannelLocation("berlin", safety_stock=1), "hamburg"])
    print(await store.available(["MUG", "TEE"], channel=web))  # {'MUG': 12, 'TEE': 2}

    # One line may take units from both places: 2 from Berlin, the rest from Hamburg.
    hold = await store.reserve([("MUG", 5)], ttl=900, owner="user-42", channel=web)
    where = sorted((a.location, a.quantity) for a in hold.allocations)
    print(where)  # [('berlin', 2), ('hamburg', 3)]

    # Released, each unit goes back where it came from.
    await store.release(hold.id)
    print((await store.stock("MUG", location="berlin")).available)  # 3

    # One parcel: the whole cart from one place (Hamburg has both), or nothing.
    parcel = Channel("parcel", ["berlin", "hamburg"], split=Split.SHIPMENT)
    cart = await store.reserve([("MUG", 1), ("TEE", 1)], ttl=900, owner="user-7", channel=parcel)
    print({a.location for a in cart.allocations})  # {'hamburg'}

    # The fullest warehouse first: Hamburg again.
    fullest = Channel("fullest", ["berlin", "hamburg"], strategy=Strategy.MOST_STOCK)
    one = await store.reserve([("MUG", 1)], ttl=900, owner="user-9", channel=fullest)
    print(one.allocations[0].location)  # hamburg

    try:
        await store.reserve([("TEE", 2)], ttl=900, owner="user-5", channel=parcel)
    except OutOfStock as exc:
        print(exc)  # out of stock: TEE (wanted 2, available 1)


if __name__ == "__main__":
    asyncio.run(main())
