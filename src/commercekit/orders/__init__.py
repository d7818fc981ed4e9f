"""Orders: what a confirmed reservation still commits, shipped in parts, each shipment once.

A reservation CONFIRMED by its payment becomes an order (`OrderBook.open`):
its units, per SKU and location as they were held, are *committed*, still
on hand there but sold. A shipment (`OrderBook.ship`) takes any part of any
line off hand, from the location it was held at, exactly once per shipment
id, however often it is retried or redelivered.

```python
from commercekit.orders import OrderBook

book = OrderBook(engine)
order = await book.open(await reservations.confirm(reservation_id))
await book.ship(order.id, "parcel-1", [("MUG", 1)])
```
"""

from __future__ import annotations

from commercekit.orders.book import OrderBook, ShipmentRequest
from commercekit.orders.models import (
    Order,
    OrderLine,
    OrderStatus,
    Shipment,
    ShipmentId,
    ShipmentLine,
)

__all__ = [
    "Order",
    "OrderBook",
    "OrderLine",
    "OrderStatus",
    "Shipment",
    "ShipmentId",
    "ShipmentLine",
    "ShipmentRequest",
]
