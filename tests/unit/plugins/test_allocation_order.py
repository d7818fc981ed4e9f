"""A plugin chooses the order of a channel's locations per cart (commercekit_allocation_order)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fakeredis import FakeAsyncRedis
from sqlalchemy.ext.asyncio import create_async_engine

from commercekit.errors import InvalidRequest, OutOfStock
from commercekit.plugins import PluginManager, hookimpl
from commercekit.reservations import (
    Allocation,
    Channel,
    ChannelLocation,
    DurableReservations,
    RedisReservationStore,
    ReservationLedger,
    ReservationLine,
    Split,
)
from commercekit.sql import migrate

WEB = Channel("web", [ChannelLocation("berlin", safety_stock=1), "hamburg"], split=Split.NONE)


class NearestToTheShopper:
    """Hamburg first for shoppers in the north; the channel's order for everyone else."""

    def __init__(self) -> None:
        self.asked: list[tuple[tuple[ReservationLine, ...], str, str]] = []

    @hookimpl
    def commercekit_allocation_order(
        self, lines: tuple[ReservationLine, ...], channel: Channel, owner: str
    ) -> list[str] | None:
        self.asked.append((lines, channel.name, owner))
        return ["hamburg", "berlin"] if owner.startswith("north-") else None


@pytest.fixture
async def durable(tmp_path: Path) -> AsyncIterator[tuple[DurableReservations, NearestToTheShopper]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.sqlite3'}"
    await migrate(url)
    engine = create_async_engine(url)
    client = FakeAsyncRedis()
    plugin = NearestToTheShopper()
    plugins = PluginManager(load_entrypoints=False)
    plugins.register(plugin)
    store = DurableReservations(
        RedisReservationStore(client, guarded=True), ReservationLedger(engine), plugins=plugins
    )
    await store.start()
    await store.set_stock("MUG", 5, location="berlin")
    await store.set_stock("MUG", 5, location="hamburg")
    try:
        yield store, plugin
    finally:
        await client.aclose()
        await engine.dispose()


async def test_the_plugin_s_order_is_the_order_allocation_takes(
    durable: tuple[DurableReservations, NearestToTheShopper],
) -> None:
    store, plugin = durable
    north = await store.reserve([("MUG", 2)], ttl=60, owner="north-1", channel=WEB)
    assert north.allocations == (Allocation(sku="MUG", location="hamburg", quantity=2),)
    south = await store.reserve([("MUG", 2)], ttl=60, owner="south-1", channel=WEB)
    assert south.allocations == (Allocation(sku="MUG", location="berlin", quantity=2),)
    assert [(lines, name, owner) for lines, name, owner in plugin.asked] == [
        ((ReservationLine(sku="MUG", quantity=2),), "web", "north-1"),
        ((ReservationLine(sku="MUG", quantity=2),), "web", "south-1"),
    ]
    # The channel's safety stock and split rule still hold in the plugin's order.
    with pytest.raises(OutOfStock):
        await store.reserve([("MUG", 4)], ttl=60, owner="north-2", channel=WEB)
    assert (await store.stock("MUG", location="berlin")).available == 3


async def test_a_reserve_without_a_channel_does_not_ask(
    durable: tuple[DurableReservations, NearestToTheShopper],
) -> None:
    store, plugin = durable
    await store.set_stock("MUG", 1)
    await store.reserve([("MUG", 1)], ttl=60, owner="north-1")
    assert plugin.asked == []


def test_an_order_naming_another_location_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="not locations of channel"):
        WEB.ordered(["paris"])
    assert WEB.ordered(["hamburg"]).names == ("hamburg",)
