"""A paid cart becomes an order, shipped in two parcels, one unit cancelled and refunded."""

import asyncio
import tempfile
from decimal import Decimal
from pathlib import Path

from fakeredis import FakeAsyncRedis
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from commercekit.errors import OverFulfilment
from commercekit.orders import OrderBook
from commercekit.payments import PaymentIntent, RefundService, SimulatedProcessor
from commercekit.reservations import DurableReservations, RedisReservationStore, ReservationLedger
from commercekit.sql import migrate


async def main(folder: Path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{folder / 'shop.sqlite3'}")
    await migrate(engine)
    store = RedisReservationStore(FakeAsyncRedis(), guarded=True)
    reservations = DurableReservations(store, ReservationLedger(engine))
    await reservations.start()
    await reservations.set_stock("MUG", 10)
    processor = SimulatedProcessor()
    refunds = RefundService(async_sessionmaker(engine), processor)
    # fakeredis and SQLite here; the payment is split over the lines by these prices
    book = OrderBook(
        engine, stock=reservations, refunds=refunds, prices=lambda _: {"MUG": Decimal("12.00")}
    )

    held = await reservations.reserve([("MUG", 3)], ttl=900, owner="user-42")
    payment = await processor.charge(
        PaymentIntent(
            idempotency_key=f"pay:{held.id}",
            reservation_id=held.id,
            user_id="user-42",
            amount=Decimal("30.00"),  # 36.00 of mugs, less a discount
            currency="EUR",
            payment_method="tok_success",
        )
    )
    order = await book.open(await reservations.confirm(held.id), payment=payment)
    print(order.status, order.committed, order.lines[0].amount)  # OPEN 3 30.00

    await book.ship(order.id, "parcel-1", [("MUG", 1)])
    await book.ship(order.id, "parcel-1", [("MUG", 1)])  # a retry: shipped once
    print((await book.get(order.id)).status)  # PARTIALLY_FULFILLED
    try:
        await book.ship(order.id, "parcel-2", [("MUG", 3)])
    except OverFulfilment as exc:
        print(exc.over[0].committed)  # 2
    cancelled = await book.cancel(order.id, "ticket-7", [("MUG", 1)])  # a change of mind
    await book.cancel(order.id, "ticket-7", [("MUG", 1)])  # a retry: cancelled once
    print(cancelled.refunded, processor.refunded(payment.id))  # 10.00 10.00
    # Of 10 mugs, 3 were sold and 1 of them is back on sale, once.
    print((await reservations.stock("MUG")).available)  # 8
    await book.ship(order.id, "parcel-2", [("MUG", 1)])
    print((await book.get(order.id)).status)  # FULFILLED
    await engine.dispose()


with tempfile.TemporaryDirectory() as folder:
    asyncio.run(main(Path(folder)))
