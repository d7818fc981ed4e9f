"""The stock journal's models: moves between named states, and who is acting."""

from __future__ import annotations

import asyncio

from commercekit.reservations import StockQuantities, StockReason, StockState, acting_as
from commercekit.reservations.journal import current_actor, levels, move


def test_a_move_takes_units_from_one_state_to_another() -> None:
    moved = StockQuantities(available=3).moved(StockState.AVAILABLE, StockState.HELD, 2)
    assert moved == StockQuantities(available=1, held=2)
    added = moved.moved(None, StockState.AVAILABLE, 4)
    assert (added.available, added.on_hand, added.added) == (5, 7, 7)
    shipped = added.moved(StockState.HELD, StockState.COMMITTED, 2).moved(
        StockState.COMMITTED, StockState.SHIPPED, 1
    )
    assert (shipped.on_hand, shipped.sold, shipped.added) == (6, 2, 7)


def test_levels_sum_rows_and_a_negative_quantity_moves_the_other_way() -> None:
    row = move("MUG", "default", -2, (None, StockState.AVAILABLE), StockReason.ADJUST)
    assert (row["source"], row["target"], row["quantity"]) == ("available", None, 2)
    total = levels([(None, "available", 10), (row["source"], row["target"], row["quantity"])])
    assert total == StockQuantities(available=8)


async def test_acting_as_names_the_actor_within_and_only_within() -> None:
    assert current_actor("owner") == "owner"
    with acting_as("admin:1"):
        assert current_actor("owner") == "admin:1"
        row = move("MUG", "default", 1, (None, StockState.AVAILABLE), StockReason.SET)
        assert row["actor"] == "admin:1"
        # A task started inside sees it too; one's change never leaks into another.
        assert await asyncio.create_task(asyncio.sleep(0, current_actor())) == "admin:1"
    assert current_actor() is None
