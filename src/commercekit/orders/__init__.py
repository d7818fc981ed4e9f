"""Orders: what a confirmed reservation still commits, shipped in parts, each shipment once.

A reservation CONFIRMED by its payment becomes an order (`OrderBook.open`):
its units, per SKU and location as they were held, are *committed*, still
on hand there but sold. A shipment (`OrderBook.ship`) takes any part of any
line off hand, from the location it was held at, exactly once per shipment
id, however often it is retried or redelivered. A cancellation
(`OrderBook.cancel`) puts units not shipped back on sale where they were
held, exactly once per cancellation id, whatever crashes in between, and
with ``refunds=`` a `commercekit.payments.RefundService` gives back what
those units were paid, in the same transaction, never more than the order's
payment.

```python
from commercekit.orders import OrderBook

book = OrderBook(engine, stock=reservations)  # a DurableReservations on the same database
order = await book.open(await reservations.confirm(reservation_id))
await book.ship(order.id, "parcel-1", [("MUG", 1)])
await book.cancel(order.id, "ticket-77")  # the rest: back on sale
```
"""

from __future__ import annotations

from commercekit.orders.audit import OrderAudit
from commercekit.orders.book import (
    OrderBook,
    ReturnRequest,
    ShipmentRequest,
    UnitPrices,
    cancellation_refund_key,
    move_id,
    return_move_id,
    return_refund_key,
)
from commercekit.orders.models import (
    Cancellation,
    CancellationId,
    CancellationLine,
    Order,
    OrderLine,
    OrderPayment,
    OrderStatus,
    RestockType,
    Return,
    ReturnId,
    ReturnLine,
    Shipment,
    ShipmentId,
    ShipmentLine,
)

__all__ = [
    "Cancellation",
    "CancellationId",
    "CancellationLine",
    "Order",
    "OrderAudit",
    "OrderBook",
    "OrderLine",
    "OrderPayment",
    "OrderStatus",
    "RestockType",
    "Return",
    "ReturnId",
    "ReturnLine",
    "ReturnRequest",
    "Shipment",
    "ShipmentId",
    "ShipmentLine",
    "ShipmentRequest",
    "UnitPrices",
    "cancellation_refund_key",
    "move_id",
    "return_move_id",
    "return_refund_key",
]
