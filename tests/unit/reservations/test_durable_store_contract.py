"""The reservation contract on `DurableReservations`: fakeredis holds, an SQLite ledger.

This is the embedded mode's store: the same Lua scripts on fakeredis, every
hold and transition recorded in the ledger (aiosqlite).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fakeredis import FakeAsyncRedis, FakeServer
from sqlalchemy.ext.asyncio import create_async_engine

from commercekit.reservations import (
    DurableReservations,
    RedisReservationStore,
    ReservationLedger,
    ReservationStore,
)
from commercekit.sql import migrate
from commercekit.testing.contracts import KitStoreContract, StoreFactory


@pytest.fixture
async def ledger_url(tmp_path: Path) -> str:
    """A migrated SQLite database of the test's own."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.sqlite3'}"
    await migrate(url)
    return url


class TestDurableReservationsOnSqlite(KitStoreContract):
    @pytest.fixture
    async def make_store(self, ledger_url: str) -> AsyncIterator[StoreFactory]:
        server = FakeServer()
        prefix = f"t{uuid.uuid4().hex[:8]}"

        @contextlib.asynccontextmanager
        async def open_store() -> AsyncIterator[ReservationStore]:
            client = FakeAsyncRedis(server=server)
            engine = create_async_engine(ledger_url)
            try:
                store = RedisReservationStore(client, prefix=prefix, guarded=True)
                durable = DurableReservations(store, ReservationLedger(engine))
                await durable.start()
                yield durable
            finally:
                await client.aclose()
                await engine.dispose()

        yield open_store
        # What the test left, Redis and the ledger agree on: nothing to repair.
        async with open_store() as store:
            assert isinstance(store, DurableReservations)
            report = await store.reconcile()
        assert report.clean, report
