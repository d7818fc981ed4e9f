"""Two per customer during a drop: runs as is, with no server (fakeredis)."""

import asyncio
import datetime as dt

from fakeredis import FakeAsyncRedis

from commercekit.errors import PurchaseLimitExceeded
from commercekit.reservations import RedisReservationStore


async def main() -> None:
    store = RedisReservationStore(FakeAsyncRedis())
    await store.set_stock("SNEAKER", 100)
    await store.set_purchase_limit("SNEAKER", 2, window=dt.timedelta(days=1))

    first = await store.reserve([("SNEAKER", 1)], ttl=900, owner="user-42")
    await store.confirm(first.id)  # bought: it counts for the next 24 hours
    await store.reserve([("SNEAKER", 1)], ttl=900, owner="user-42")

    # Concurrent carts of one shopper: the script counts every one of them.
    results = await asyncio.gather(
        *(store.reserve([("SNEAKER", 1)], ttl=900, owner="user-42") for _ in range(5)),
        return_exceptions=True,
    )
    print(sum(isinstance(r, PurchaseLimitExceeded) for r in results))  # 5

    try:
        await store.reserve([("SNEAKER", 1)], ttl=900, owner="user-42")
    except PurchaseLimitExceeded as exc:
        print(exc)  # purchase limit reached: SNEAKER (limit 2, holds or bought 2, wanted 1)

    # Another shopper has a limit of their own.
    other = await store.reserve([("SNEAKER", 2)], ttl=900, owner="user-7")
    print(other.total_quantity)  # 2


asyncio.run(main())
