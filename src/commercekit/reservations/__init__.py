"""Atomic stock reservations: the store protocol, its Redis implementation, the sweeper.

```python
from commercekit.reservations import RedisReservationStore

store = RedisReservationStore(redis.asyncio.from_url("redis://localhost"))
await store.set_stock("SKU-1", 10)
hold = await store.reserve([("SKU-1", 2)], ttl=900, owner="user-42")
await store.confirm(hold.id)
```

`RedisReservationStore` needs ``commercekit[redis]``; `ReservationLedger` and
`DurableReservations` need ``commercekit[postgres]`` too. They are imported
on first use, so the models work without either.
"""

from typing import TYPE_CHECKING

from commercekit._lazy import lazy_attributes
from commercekit.reservations.journal import (
    StockEntry,
    StockQuantities,
    StockReason,
    StockState,
    acting_as,
)
from commercekit.reservations.kits import Kit, KitStore
from commercekit.reservations.locations import Channel, ChannelLocation, Split, Strategy
from commercekit.reservations.models import (
    DEFAULT_LOCATION,
    Allocation,
    LocationName,
    MoveId,
    PurchaseLimit,
    Reservation,
    ReservationLine,
    ReservationStatus,
    SoldUnits,
    StockLevel,
    merge_lines,
)
from commercekit.reservations.store import LineInput, ReservationStore, TTLInput
from commercekit.reservations.sweeper import ExpiryCallback, ExpirySweeper

if TYPE_CHECKING:
    from commercekit.reservations.durable import DurableReservations, ReconcileReport
    from commercekit.reservations.ledger import JournalRow, ReservationLedger
    from commercekit.reservations.redis import RedisReservationStore
    from commercekit.reservations.watch import StockWatch

__all__ = [
    "DEFAULT_LOCATION",
    "Allocation",
    "Channel",
    "ChannelLocation",
    "DurableReservations",
    "ExpiryCallback",
    "ExpirySweeper",
    "JournalRow",
    "Kit",
    "KitStore",
    "LineInput",
    "LocationName",
    "MoveId",
    "PurchaseLimit",
    "ReconcileReport",
    "RedisReservationStore",
    "Reservation",
    "ReservationLedger",
    "ReservationLine",
    "ReservationStatus",
    "ReservationStore",
    "SoldUnits",
    "Split",
    "StockEntry",
    "StockLevel",
    "StockQuantities",
    "StockReason",
    "StockState",
    "StockWatch",
    "Strategy",
    "TTLInput",
    "acting_as",
    "merge_lines",
]


_LAZY = {
    # These need optional extras; import them only when asked for.
    "RedisReservationStore": "commercekit.reservations.redis",
    "ReservationLedger": "commercekit.reservations.ledger",
    "JournalRow": "commercekit.reservations.ledger",
    "StockWatch": "commercekit.reservations.watch",
    "DurableReservations": "commercekit.reservations.durable",
    "ReconcileReport": "commercekit.reservations.durable",
}

__getattr__ = lazy_attributes(__name__, _LAZY)
