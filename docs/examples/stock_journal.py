"""Every change of a mug's stock, from the shelf to a return, in the stock journal."""

import asyncio
import tempfile
from pathlib import Path

from fakeredis import FakeAsyncRedis
from sqlalchemy.ext.asyncio import create_async_engine

from commercekit.orders import OrderBook, RestockType
from commercekit.reservations import (
    DurableReservations,
    RedisReservationStore,
    ReservationLedger,
    acting_as,
)
from commercekit.sql import migrate


async def main(folder: Path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{folder / 'shop.sqlite3'}")
    await migrate(engine)
    store = RedisReservationStore(FakeAsyncRedis(), guarded=True)
    reservations = DurableReservations(store, ReservationLedger(engine))
    await reservations.start()
    book = OrderBook(engine, stock=reservations)

    with acting_as("admin:7"):  # named in the rows written inside
        await reservations.set_stock("MUG", 10)
    held = await reservations.reserve([("MUG", 3)], ttl=900, owner="user-42")
    order = await book.open(await reservations.confirm(held.id))
    with acting_as("admin:7"):
        await book.ship(order.id, "parcel-1", [("MUG", 2)])
        await book.cancel(order.id, "ticket-7", [("MUG", 1)])
        await book.receive_return(order.id, "rma-1", [("MUG", 1, RestockType.DAMAGED)])

    for row in await reservations.journal(sku="MUG"):
        source = row.source.value if row.source else "-"
        target = row.target.value if row.target else "-"
        print(f"{row.reason:8} {row.quantity} {source:>9} -> {target:9} {row.reference or ''}")
    # set      10         - -> available
    # reserve  3 available -> held      <the reservation's id>
    # confirm  3      held -> committed <the reservation's id>
    # ship     2 committed -> shipped   parcel-1
    # cancel   1 committed -> available ticket-7
    # return   1   shipped -> damaged   rma-1
    last = (await reservations.journal(sku="MUG"))[-1].after
    print(last.available, last.on_hand, last.shipped, last.damaged)  # 8 8 1 1
    print(last.added == last.on_hand + last.shipped + last.damaged + last.written_off)  # True
    print(await reservations.ledger.journal_drift())  # {}
    print((await reservations.reconcile()).clean)  # True
    # The orders agree with the journal, and with what their payments paid.
    print((await book.audit()).clean)  # True
    await engine.dispose()


with tempfile.TemporaryDirectory() as folder:
    asyncio.run(main(Path(folder)))
