"""Carts spread over shards (cluster slots): shared cases, run on fakeredis and a real cluster."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from commercekit.errors import BackendUnavailable, OutOfStock
from commercekit.reservations import RedisReservationStore, ReservationLine, ReservationStatus
from commercekit.testing.contracts import assert_conserved

SHARDS = 8
GRACE = dt.timedelta(milliseconds=100)

StoreMaker = Callable[[], AsyncIterator[RedisReservationStore]]


def skus_in_distinct_shards(store: RedisReservationStore, count: int) -> list[str]:
    """`count` fresh SKUs, each in a different shard."""
    found: dict[int, str] = {}
    while len(found) < count:
        sku = f"S-{uuid.uuid4().hex[:10]}"
        found.setdefault(store._shard_of(sku), sku)
    return list(found.values())


async def _past(seconds: float) -> None:
    await asyncio.sleep(seconds + 0.05)


class SpreadCartCases:
    """Provide a `store` fixture: a RedisReservationStore with SHARDS shards and GRACE."""

    store: RedisReservationStore

    async def test_a_spread_cart_is_held_whole(self, store: RedisReservationStore) -> None:
        a, b, c = skus_in_distinct_shards(store, 3)
        for sku in (a, b, c):
            await store.set_stock(sku, 5)
        hold = await store.reserve([(a, 1), (b, 2), (c, 3)], ttl=60, owner="u")
        assert {line.sku: line.quantity for line in hold.lines} == {a: 1, b: 2, c: 3}
        assert await store.available([a, b, c]) == {a: 4, b: 3, c: 2}
        confirmed = await store.confirm(hold.id)
        assert confirmed.status is ReservationStatus.CONFIRMED
        assert [(await store.stock(s)).sold for s in (a, b, c)] == [1, 2, 3]
        await assert_conserved(store, {a: 5, b: 5, c: 5}, [hold])

    async def test_a_spread_cart_short_anywhere_holds_nothing(
        self, store: RedisReservationStore
    ) -> None:
        a, b, c = skus_in_distinct_shards(store, 3)
        await store.set_stock(a, 5)
        await store.set_stock(b, 1)
        with pytest.raises(OutOfStock) as error:
            await store.reserve([(a, 1), (b, 2), (c, 1)], ttl=60, owner="u", idempotency_key="k")
        assert {s.sku for s in error.value.short} == {b, c}
        assert await store.available([a, b, c]) == {a: 5, b: 1, c: 0}
        assert (await store.stock(a)).held == 0
        # the key was not used up by the failed attempt
        await store.set_stock(c, 1)
        await store.set_stock(b, 2)
        hold = await store.reserve([(a, 1), (b, 2), (c, 1)], ttl=60, owner="u", idempotency_key="k")
        assert hold.status is ReservationStatus.PENDING

    async def test_release_and_expiry_return_every_shard_s_units(
        self, store: RedisReservationStore
    ) -> None:
        a, b = skus_in_distinct_shards(store, 2)
        await store.set_stock(a, 3)
        await store.set_stock(b, 3)
        released = await store.reserve([(a, 1), (b, 1)], ttl=60, owner="u")
        await store.release(released.id)
        due = await store.reserve([(a, 2), (b, 2)], ttl=0.05, owner="u")
        await _past(0.05)
        assert [r.id for r in await store.expire_due()] == [due.id]
        assert await store.available([a, b]) == {a: 3, b: 3}
        await assert_conserved(store, {a: 3, b: 3}, [released, due])

    async def test_idempotent_retries_of_a_spread_cart_hold_once(
        self, store: RedisReservationStore
    ) -> None:
        a, b = skus_in_distinct_shards(store, 2)
        await store.set_stock(a, 20)
        await store.set_stock(b, 20)
        holds = await asyncio.gather(
            *(
                store.reserve([(a, 1), (b, 1)], ttl=60, owner="u", idempotency_key="same")
                for _ in range(10)
            )
        )
        assert len({h.id for h in holds}) == 1
        assert await store.available([a, b]) == {a: 19, b: 19}

    async def test_concurrent_spread_carts_never_oversell(
        self, store: RedisReservationStore
    ) -> None:
        a, b = skus_in_distinct_shards(store, 2)
        await store.set_stock(a, 10)
        await store.set_stock(b, 100)

        async def attempt() -> bool:
            try:
                await store.reserve([(b, 1), (a, 1)], ttl=60, owner="u")
            except OutOfStock:
                return False
            return True

        results = await asyncio.gather(*(attempt() for _ in range(60)))
        assert sum(results) == 10
        assert await store.available([a, b]) == {a: 0, b: 90}

    async def test_a_crash_after_some_parts_is_cleaned_up_by_the_sweeper(
        self, store: RedisReservationStore
    ) -> None:
        a, b, c = skus_in_distinct_shards(store, 3)
        for sku in (a, b, c):
            await store.set_stock(sku, 4)
        # the process dies after the parent and one part, before the last part
        cart = [ReservationLine(sku=a, quantity=1), ReservationLine(sku=b, quantity=1)]
        groups = {store._shard_of(a): cart[:1], store._shard_of(b): cart[1:]}
        home, other = groups
        rid = store._new_id(home)
        common = {"ttl_ms": 50, "owner": "u", "cart": cart}
        await store._reserve_in(
            home, rid, cart[:1], key=None, role="parent", parts=[other], **common
        )
        await store._reserve_in(
            other, f"{rid}/{other}", cart[1:], key=None, role="part", parent=rid, **common
        )
        # and an orphan part whose parent was never written
        orphan = store._new_id(store._shard_of(a))
        await store._reserve_in(
            store._shard_of(c),
            f"{orphan}/{store._shard_of(c)}",
            [ReservationLine(sku=c, quantity=2)],
            key=None,
            role="part",
            parent=orphan,
            **common,
        )
        assert await store.available([a, b, c]) == {a: 3, b: 3, c: 2}
        with pytest.raises(BackendUnavailable, match="still being made"):
            await store.confirm(rid)  # an incomplete cart is never sold

        await _past(0.05)
        assert [r.id for r in await store.expire_due()] == [rid]  # the parent, at its deadline
        await _past(GRACE.total_seconds())
        await store.expire_due()  # the parts, after the grace
        assert await store.available([a, b, c]) == {a: 4, b: 4, c: 4}
        assert [(await store.stock(s)).held for s in (a, b, c)] == [0, 0, 0]

    async def test_a_crash_after_confirming_the_parent_rolls_the_parts_forward(
        self, store: RedisReservationStore
    ) -> None:
        a, b = skus_in_distinct_shards(store, 2)
        await store.set_stock(a, 2)
        await store.set_stock(b, 2)
        hold = await store.reserve([(a, 1), (b, 1)], ttl=0.05, owner="u")
        # the parent is confirmed, then the process dies before its part follows
        reply = await store._transition_in(store._shard_of(hold.id), hold.id, "confirm")
        assert reply["reservation"]["status"] == "CONFIRMED"
        assert (await store.stock(b)).held == 1
        await _past(0.05 + GRACE.total_seconds())
        assert await store.expire_due() == []
        assert [(await store.stock(s)).sold for s in (a, b)] == [1, 1]
        assert [(await store.stock(s)).held for s in (a, b)] == [0, 0]
        await assert_conserved(store, {a: 2, b: 2}, [hold])
