"""Reserve, confirm, release and expire stock: runs as is, with no server (fakeredis)."""

import asyncio

from fakeredis import FakeAsyncRedis

from commercekit.errors import OutOfStock
from commercekit.reservations import ExpirySweeper, RedisReservationStore


async def main() -> None:
    store = RedisReservationStore(FakeAsyncRedis())  # or redis.asyncio.from_url(...)
    await store.set_stock("MUG", 5)
    await store.set_stock("TEE", 2)

    # A cart is held whole or not at all.
    cart = await store.reserve([("MUG", 2), ("TEE", 1)], ttl=900, owner="user-42")
    print(cart.status, await store.available(["MUG", "TEE"]))  # PENDING {'MUG': 3, 'TEE': 1}

    try:
        await store.reserve([("MUG", 1), ("TEE", 2)], ttl=900, owner="user-7")
    except OutOfStock as exc:
        print(exc)  # out of stock: TEE (wanted 2, available 1)

    await store.confirm(cart.id)  # paid: the units are sold
    print((await store.stock("MUG")).sold)  # 2

    # Holds past their deadline go back to available, reported once each.
    await store.reserve([("TEE", 1)], ttl=0.1, owner="user-9")
    async with ExpirySweeper(store, interval=0.05, on_expired=lambda r: print("expired", r.id)):
        await asyncio.sleep(0.3)
    print(await store.available(["TEE"]))  # {'TEE': 1}


if __name__ == "__main__":
    asyncio.run(main())
