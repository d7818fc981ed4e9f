"""Atomic stock reservations: the store protocol, its Redis implementation, the sweeper.

```python
from commercekit.reservations import RedisReservationStore

store = RedisReservationStore(redis.asyncio.from_url("redis://localhost"))
await store.set_stock("SKU-1", 10)
hold = await store.reserve([("SKU-1", 2)], ttl=900, owner="user-42")
await store.confirm(hold.id)
```

`RedisReservationStore` needs ``commercekit[redis]``; import it from
``commercekit.reservations.redis`` or from here.
"""

from typing import TYPE_CHECKING

from commercekit.reservations.models import (
    Reservation,
    ReservationLine,
    ReservationStatus,
    StockLevel,
    merge_lines,
)
from commercekit.reservations.store import LineInput, ReservationStore, TTLInput
from commercekit.reservations.sweeper import ExpiryCallback, ExpirySweeper

if TYPE_CHECKING:
    from commercekit.reservations.redis import RedisReservationStore

__all__ = [
    "ExpiryCallback",
    "ExpirySweeper",
    "LineInput",
    "RedisReservationStore",
    "Reservation",
    "ReservationLine",
    "ReservationStatus",
    "ReservationStore",
    "StockLevel",
    "TTLInput",
    "merge_lines",
]


def __getattr__(name: str) -> object:
    # Import the Redis store lazily, so the models work without redis-py.
    if name == "RedisReservationStore":
        from commercekit.reservations.redis import RedisReservationStore  # noqa: PLC0415

        return RedisReservationStore
    raise AttributeError(name)
