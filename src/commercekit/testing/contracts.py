"""`ReservationStoreContract`: one test suite that every reservation backend must pass.

Subclass it once per backend and provide the `make_store` fixture: a
callable returning an async context manager that opens a store over the
*same* data each time it is called (two calls are two replicas), isolated
from other tests::

    class TestMyStore(ReservationStoreContract):
        @pytest.fixture
        def make_store(self, redis_server):
            prefix = f"t{uuid.uuid4().hex}"

            @contextlib.asynccontextmanager
            async def open_store():
                client = redis.asyncio.from_url(redis_server.url)
                yield RedisReservationStore(client, prefix=prefix)
                await client.aclose()

            return open_store
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commercekit.errors import (
    HoldExpired,
    IdempotencyConflict,
    InvalidRequest,
    InvalidTransition,
    OutOfStock,
    PurchaseLimitExceeded,
    ReservationNotFound,
    StockConflict,
)
from commercekit.reservations.kits import KitStore
from commercekit.reservations.locations import Channel, ChannelLocation, Split, Strategy
from commercekit.reservations.models import (
    DEFAULT_LOCATION,
    Allocation,
    Reservation,
    ReservationLine,
    ReservationStatus,
    StockLevel,
)
from commercekit.reservations.store import ReservationStore

__all__ = ["KitStoreContract", "ReservationStoreContract", "StoreFactory", "assert_conserved"]

StoreFactory = Callable[[], AbstractAsyncContextManager[ReservationStore]]

SHORT_TTL = 0.05
"""Seconds: a hold that is due almost at once."""


def _sku() -> str:
    return f"SKU-{uuid.uuid4().hex[:12]}"


def _together(store: ReservationStore, count: int) -> list[str]:
    """`count` fresh SKUs of one shard (a store spread over shards amends within one)."""
    shard_of: Callable[[str], int] | None = getattr(store, "shard_of", None)
    skus = [_sku()]
    while len(skus) < count:
        sku = _sku()
        if shard_of is None or shard_of(sku) == shard_of(skus[0]):
            skus.append(sku)
    return skus


async def _wait_past(reservation: Reservation) -> None:
    delay = (reservation.expires_at - dt.datetime.now(dt.UTC)).total_seconds()
    await asyncio.sleep(max(delay, 0) + 0.02)


async def assert_conserved(
    store: ReservationStore,
    added: dict[str, int],
    reservations: list[Reservation],
) -> None:
    """Check the invariants for every SKU in `added` (units ever added).

    available + held + sold == added; available >= 0 (>= -cap on backorder); held is exactly the
    units of PENDING reservations and sold of CONFIRMED ones (as the store
    reports them now).
    """
    current = [await store.get(r.id) for r in reservations]
    for sku, total in added.items():
        level: StockLevel = await store.stock(sku)
        pending = sum(r.quantity_of(sku) for r in current if r.status is ReservationStatus.PENDING)
        sold = sum(r.quantity_of(sku) for r in current if r.status is ReservationStatus.CONFIRMED)
        assert level.available >= -level.backorder, level
        assert level.available + level.held + level.sold == total, (level, total)
        assert level.held == pending, (level, pending)
        assert level.sold == sold, (level, sold)


_SKUS = 3
_OPERATIONS = st.one_of(
    st.tuples(st.just("set"), st.integers(0, _SKUS - 1), st.integers(0, 12)),
    st.tuples(st.just("restock"), st.integers(0, _SKUS - 1), st.integers(1, 5)),
    st.tuples(st.just("adjust"), st.integers(0, _SKUS - 1), st.integers(-5, 5)),
    st.tuples(
        st.just("reserve"),
        st.lists(st.tuples(st.integers(0, _SKUS - 1), st.integers(1, 4)), min_size=1, max_size=4),
        st.booleans(),  # a hold that is due almost at once
    ),
    st.tuples(st.sampled_from(["confirm", "release", "extend"]), st.integers(0, 50)),
    st.tuples(st.just("expire_due"), st.integers(1, 5)),
)


_AFTER = {
    "confirm": ReservationStatus.CONFIRMED,
    "release": ReservationStatus.RELEASED,
    "extend": ReservationStatus.PENDING,
}


class _Player:
    """Applies random operations to a store, checking every invariant after each."""

    def __init__(self, store: ReservationStore) -> None:
        self.store = store
        self.skus = [_sku() for _ in range(_SKUS)]
        self.added = dict.fromkeys(self.skus, 0)
        self.holds: list[Reservation] = []
        self.final: dict[str, ReservationStatus] = {}

    async def set(self, index: int, on_hand: int) -> None:
        sku = self.skus[index]
        before = await self.store.stock(sku)
        try:
            await self.store.set_stock(sku, on_hand)
        except StockConflict:
            assert on_hand < before.held
        else:
            self.added[sku] += on_hand - before.on_hand

    async def restock(self, index: int, quantity: int) -> None:
        await self.store.restock(self.skus[index], quantity)
        self.added[self.skus[index]] += quantity

    async def adjust(self, index: int, delta: int) -> None:
        with contextlib.suppress(StockConflict):
            await self.store.adjust(self.skus[index], delta)
            self.added[self.skus[index]] += delta

    async def reserve(self, lines: list[tuple[int, int]], due_at_once: bool) -> None:
        with contextlib.suppress(OutOfStock):
            cart = [(self.skus[i], q) for i, q in lines]
            ttl = 0.001 if due_at_once else 60
            self.holds.append(await self.store.reserve(cart, ttl=ttl, owner="prop"))

    async def expire_due(self, limit: int) -> None:
        for expired in await self.store.expire_due(limit=limit):
            assert expired.status is ReservationStatus.EXPIRED
            assert (await self.store.get(expired.id)).status is ReservationStatus.EXPIRED

    async def transition(self, action: str, pick: int) -> None:
        if not self.holds:
            return
        target = self.holds[pick % len(self.holds)]
        call = getattr(self.store, action)
        args = (target.id, 60) if action == "extend" else (target.id,)
        try:
            changed = await call(*args)
        except InvalidTransition as exc:
            refused: InvalidTransition = exc
        else:
            assert changed.status is _AFTER[action]
            assert (await self.store.get(target.id)).status is _AFTER[action]
            return
        # HoldExpired: this call expired it; otherwise it was terminal already
        assert refused.reservation.status.is_terminal
        if isinstance(refused, HoldExpired):
            assert refused.reservation.status is ReservationStatus.EXPIRED

    async def check(self) -> None:
        for hold in self.holds:
            now = (await self.store.get(hold.id)).status
            if hold.id in self.final:
                assert now is self.final[hold.id], "a terminal reservation changed"
            elif now.is_terminal:
                self.final[hold.id] = now
        await assert_conserved(self.store, self.added, self.holds)

    async def play(self, operations: list[tuple[Any, ...]]) -> None:
        for index in range(_SKUS):
            await self.restock(index, 8)
        for kind, *args in operations:
            if kind in _AFTER:
                await self.transition(kind, *args)
            else:
                await getattr(self, kind)(*args)
            await self.check()


async def _play(make_store: StoreFactory, operations: list[tuple[Any, ...]]) -> None:
    async with make_store() as store:
        await _Player(store).play(operations)


class ReservationStoreContract:
    """The behaviour every `ReservationStore` must show. Subclass and provide `make_store`."""

    @pytest.fixture
    def make_store(self) -> StoreFactory:
        """Abstract: open a store over this test's data (override in the subclass)."""
        raise NotImplementedError("provide a make_store fixture")

    @pytest.fixture
    async def store(self, make_store: StoreFactory) -> AsyncIterator[ReservationStore]:
        """A store for the test."""
        async with make_store() as store:
            yield store

    # ------------------------------------------------------------- stock
    async def test_set_stock_then_read_it(self, store: ReservationStore) -> None:
        sku = _sku()
        assert await store.stock(sku) == StockLevel(sku=sku, available=0, held=0, sold=0)
        level = await store.set_stock(sku, 10)
        assert (level.available, level.held, level.sold) == (10, 0, 0)
        assert await store.available([sku, "unknown-sku"]) == {sku: 10, "unknown-sku": 0}

    async def test_restock_and_adjust(self, store: ReservationStore) -> None:
        sku = _sku()
        await store.set_stock(sku, 5)
        assert (await store.restock(sku, 3)).available == 8
        assert (await store.adjust(sku, -6)).available == 2
        with pytest.raises(StockConflict):
            await store.adjust(sku, -3)
        assert (await store.stock(sku)).available == 2

    async def test_set_stock_keeps_holds(self, store: ReservationStore) -> None:
        sku = _sku()
        await store.set_stock(sku, 10)
        await store.reserve([(sku, 4)], ttl=60, owner="u1")
        level = await store.set_stock(sku, 6)
        assert (level.available, level.held) == (2, 4)
        with pytest.raises(StockConflict):
            await store.set_stock(sku, 3)
        assert (await store.stock(sku)).held == 4

    # ----------------------------------------------------------- reserve
    async def test_reserve_holds_stock(self, store: ReservationStore) -> None:
        sku = _sku()
        await store.set_stock(sku, 10)
        hold = await store.reserve([(sku, 3)], ttl=60, owner="u1")
        assert hold.status is ReservationStatus.PENDING
        assert hold.owner == "u1"
        assert hold.total_quantity == 3
        assert 55 < (hold.expires_at - hold.created_at).total_seconds() <= 60
        assert await store.get(hold.id) == hold
        level = await store.stock(sku)
        assert (level.available, level.held, level.sold) == (7, 3, 0)

    async def test_a_cart_is_all_or_nothing(self, store: ReservationStore) -> None:
        a, b, c = _sku(), _sku(), _sku()
        await store.set_stock(a, 5)
        await store.set_stock(b, 1)
        with pytest.raises(OutOfStock) as error:
            await store.reserve([(a, 2), (b, 2), (c, 1)], ttl=60, owner="u1")
        assert {(s.sku, s.requested, s.available) for s in error.value.short} == {
            (b, 2, 1),
            (c, 1, 0),
        }
        assert await store.available([a, b, c]) == {a: 5, b: 1, c: 0}
        hold = await store.reserve([(a, 2), (b, 1)], ttl=60, owner="u1")
        assert await store.available([a, b]) == {a: 3, b: 0}
        assert {line.sku: line.quantity for line in hold.lines} == {a: 2, b: 1}

    async def test_lines_of_one_sku_are_summed_before_the_check(
        self, store: ReservationStore
    ) -> None:
        sku = _sku()
        await store.set_stock(sku, 5)
        with pytest.raises(OutOfStock) as error:
            await store.reserve([(sku, 3), (sku, 3)], ttl=60, owner="u1")
        assert [(s.requested, s.available) for s in error.value.short] == [(6, 5)]
        hold = await store.reserve([(sku, 2), (sku, 3)], ttl=60, owner="u1")
        assert [(line.sku, line.quantity) for line in hold.lines] == [(sku, 5)]
        assert (await store.stock(sku)).available == 0

    @pytest.mark.parametrize(
        "lines",
        [
            [],
            [("A", 0)],
            [("A", -1)],
            [("A", 1.5)],
            [("A", True)],
            [("A", "2")],
            [("", 1)],
            [("has space", 1)],
            [("A", 10**7)],
            "A",
            [("A",)],
            [(f"S{i}", 1) for i in range(101)],
        ],
    )
    async def test_bad_carts_are_refused_before_anything_changes(
        self, store: ReservationStore, lines: Any
    ) -> None:
        with pytest.raises(InvalidRequest):
            await store.reserve(lines, ttl=60, owner="u1")

    @pytest.mark.parametrize("ttl", [0, -1, 0.0, dt.timedelta(0), dt.timedelta(days=31), "60"])
    async def test_bad_ttls_are_refused(self, store: ReservationStore, ttl: Any) -> None:
        sku = _sku()
        await store.set_stock(sku, 1)
        with pytest.raises(InvalidRequest):
            await store.reserve([(sku, 1)], ttl=ttl, owner="u1")
        assert (await store.stock(sku)).available == 1

    async def test_bad_stock_input_is_refused(self, store: ReservationStore) -> None:
        with pytest.raises(InvalidRequest):
            await store.set_stock(_sku(), -1)
        with pytest.raises(InvalidRequest):
            await store.restock(_sku(), 0)
        with pytest.raises(InvalidRequest):
            await store.restock("bad sku", 1)
        with pytest.raises(InvalidRequest):
            await store.adjust(_sku(), 1.0)  # type: ignore[arg-type]

    # ------------------------------------------------------- idempotency
    async def test_an_idempotency_key_replays_the_first_reservation(
        self, store: ReservationStore
    ) -> None:
        sku = _sku()
        await store.set_stock(sku, 10)
        first = await store.reserve([(sku, 2)], ttl=60, owner="u1", idempotency_key="k1")
        again = await store.reserve([(sku, 2)], ttl=60, owner="u1", idempotency_key="k1")
        assert again == first
        assert again.idempotency_key == "k1"
        assert (await store.stock(sku)).held == 2
        await store.confirm(first.id)
        replay = await store.reserve([(sku, 2)], ttl=60, owner="u1", idempotency_key="k1")
        assert replay.id == first.id
        assert replay.status is ReservationStatus.CONFIRMED

    async def test_an_idempotency_key_with_another_cart_conflicts(
        self, store: ReservationStore
    ) -> None:
        sku = _sku()
        await store.set_stock(sku, 10)
        first = await store.reserve([(sku, 2)], ttl=60, owner="u1", idempotency_key="k1")
        with pytest.raises(IdempotencyConflict) as error:
            await store.reserve([(sku, 3)], ttl=60, owner="u1", idempotency_key="k1")
        assert error.value.reservation_id == first.id
        other = await store.reserve([(sku, 3)], ttl=60, owner="u2", idempotency_key="k1")
        assert other.id != first.id  # keys are per owner
        assert (await store.stock(sku)).held == 5

    async def test_concurrent_retries_with_one_key_hold_once(self, store: ReservationStore) -> None:
        sku = _sku()
        await store.set_stock(sku, 100)
        results = await asyncio.gather(
            *(
                store.reserve([(sku, 1)], ttl=60, owner="u1", idempotency_key="same")
                for _ in range(25)
            )
        )
        assert len({r.id for r in results}) == 1
        assert (await store.stock(sku)).held == 1

    # ------------------------------------------------------- transitions
    async def test_confirm_sells_the_held_units_once(self, store: ReservationStore) -> None:
        sku = _sku()
        await store.set_stock(sku, 5)
        hold = await store.reserve([(sku, 2)], ttl=60, owner="u1")
        confirmed = await store.confirm(hold.id)
        assert confirmed.status is ReservationStatus.CONFIRMED
        assert confirmed.updated_at >= hold.updated_at
        level = await store.stock(sku)
        assert (level.available, level.held, level.sold) == (3, 0, 2)
        for action in (store.confirm, store.release):
            with pytest.raises(InvalidTransition) as error:
                await action(hold.id)
            assert error.value.reservation.status is ReservationStatus.CONFIRMED
        assert await store.stock(sku) == level

    async def test_release_returns_the_units_once(self, store: ReservationStore) -> None:
        sku = _sku()
        await store.set_stock(sku, 5)
        hold = await store.reserve([(sku, 2)], ttl=60, owner="u1")
        assert (await store.release(hold.id)).status is ReservationStatus.RELEASED
        with pytest.raises(InvalidTransition):
            await store.release(hold.id)
        with pytest.raises(InvalidTransition):
            await store.extend(hold.id, 60)
        level = await store.stock(sku)
        assert (level.available, level.held, level.sold) == (5, 0, 0)

    async def test_extend_moves_the_deadline(self, store: ReservationStore) -> None:
        sku = _sku()
        await store.set_stock(sku, 1)
        hold = await store.reserve([(sku, 1)], ttl=SHORT_TTL * 4, owner="u1")
        extended = await store.extend(hold.id, 60)
        assert extended.expires_at > hold.expires_at
        await _wait_past(hold)
        assert await store.expire_due() == []
        assert (await store.confirm(hold.id)).status is ReservationStatus.CONFIRMED

    async def test_unknown_ids_are_not_found(self, store: ReservationStore) -> None:
        for call in (store.get, store.confirm, store.release):
            with pytest.raises(ReservationNotFound):
                await call(str(uuid.uuid4()))

    # ------------------------------------------------------------ expiry
    async def test_expire_due_returns_stock_once(self, store: ReservationStore) -> None:
        sku = _sku()
        await store.set_stock(sku, 4)
        hold = await store.reserve([(sku, 3)], ttl=SHORT_TTL, owner="u1")
        keep = await store.reserve([(sku, 1)], ttl=60, owner="u1")
        await _wait_past(hold)
        expired = await store.expire_due()
        assert [r.id for r in expired] == [hold.id]
        assert expired[0].status is ReservationStatus.EXPIRED
        assert await store.expire_due() == []
        assert (await store.get(keep.id)).status is ReservationStatus.PENDING
        level = await store.stock(sku)
        assert (level.available, level.held) == (3, 1)
        with pytest.raises(InvalidTransition) as error:
            await store.confirm(hold.id)
        assert error.value.reservation.status is ReservationStatus.EXPIRED

    async def test_confirm_after_the_deadline_expires_the_hold(
        self, store: ReservationStore
    ) -> None:
        sku = _sku()
        await store.set_stock(sku, 2)
        hold = await store.reserve([(sku, 2)], ttl=SHORT_TTL, owner="u1")
        await _wait_past(hold)
        with pytest.raises(HoldExpired) as error:
            await store.confirm(hold.id)
        assert error.value.reservation.status is ReservationStatus.EXPIRED
        assert await store.expire_due() == []  # already expired, not twice
        assert (await store.stock(sku)).available == 2

    async def test_expire_due_works_in_batches(self, store: ReservationStore) -> None:
        sku = _sku()
        await store.set_stock(sku, 30)
        holds = [await store.reserve([(sku, 1)], ttl=SHORT_TTL, owner="u1") for _ in range(25)]
        await _wait_past(holds[-1])
        first = await store.expire_due(limit=10)
        rest = await store.expire_due(limit=100)
        assert len(first) == 10
        assert len(rest) == 15
        assert {r.id for r in first + rest} == {h.id for h in holds}
        assert (await store.stock(sku)).available == 30

    # ------------------------------------------------------- concurrency
    async def test_concurrent_reserves_never_oversell(self, make_store: StoreFactory) -> None:
        sku = _sku()
        async with make_store() as one, make_store() as two:
            await one.set_stock(sku, 50)

            # Many calls in flight on each replica, within a typical connection pool.
            in_flight = asyncio.Semaphore(48)

            async def attempt(store: ReservationStore) -> bool:
                async with in_flight:
                    try:
                        await store.reserve([(sku, 1)], ttl=60, owner="u1")
                    except OutOfStock:
                        return False
                    return True

            results = await asyncio.gather(*(attempt((one, two)[i % 2]) for i in range(300)))
            assert sum(results) == 50
            level = await one.stock(sku)
            assert (level.available, level.held) == (0, 50)

    async def test_racing_sweeps_expire_each_hold_once(self, make_store: StoreFactory) -> None:
        sku = _sku()
        async with make_store() as one, make_store() as two:
            await one.set_stock(sku, 200)
            holds = [await one.reserve([(sku, 1)], ttl=SHORT_TTL, owner="u") for _ in range(200)]
            await _wait_past(holds[-1])
            batches = await asyncio.gather(
                *(store.expire_due(limit=7) for _ in range(40) for store in (one, two))
            )
            ids = [r.id for batch in batches for r in batch]
            assert len(ids) == len(set(ids)) == 200
            assert (await one.stock(sku)).available == 200

    async def test_confirm_racing_release_has_one_winner(self, make_store: StoreFactory) -> None:
        sku = _sku()
        async with make_store() as one, make_store() as two:
            await one.set_stock(sku, 40)
            holds = [await one.reserve([(sku, 1)], ttl=60, owner="u") for _ in range(40)]

            async def outcome(call: Any) -> str:
                try:
                    await call
                except InvalidTransition:
                    return "lost"
                return "won"

            for hold in holds:
                results = await asyncio.gather(
                    outcome(one.confirm(hold.id)), outcome(two.release(hold.id))
                )
                assert sorted(results) == ["lost", "won"]
            level = await one.stock(sku)
            assert level.held == 0
            assert level.available + level.sold == 40
            await assert_conserved(one, {sku: 40}, holds)

    # -------------------------------------------------------- backorders
    async def test_a_backorder_cap_lets_holds_go_that_far_beyond_stock_and_no_further(
        self, store: ReservationStore
    ) -> None:
        sku = _sku()
        await store.set_stock(sku, 2)
        level = await store.set_backorder(sku, 3)
        assert (level.available, level.backorder, level.sellable) == (2, 3, 5)
        assert await store.available([sku]) == {sku: 5}
        first = await store.reserve([(sku, 4)], ttl=60, owner="u1")
        assert first.allocations == (
            Allocation(sku=sku, location=DEFAULT_LOCATION, quantity=4, backordered=2),
        )
        assert first.backordered == 2
        assert await store.get(first.id) == first
        level = await store.stock(sku)
        assert (level.available, level.held, level.backordered) == (-2, 4, 2)
        with pytest.raises(OutOfStock) as error:
            await store.reserve([(sku, 2)], ttl=60, owner="u1")
        assert [(s.requested, s.available) for s in error.value.short] == [(2, 1)]
        last = await store.reserve([(sku, 1)], ttl=60, owner="u1")
        assert last.backordered == 1
        assert await store.available([sku]) == {sku: 0}
        await store.release(first.id)
        level = await store.stock(sku)
        assert (level.available, level.held, level.sold) == (1, 1, 0)
        await store.confirm(last.id)
        assert (await store.stock(sku)).sold == 1

    async def test_stock_changes_keep_to_the_backorder_floor(self, store: ReservationStore) -> None:
        sku = _sku()
        await store.set_stock(sku, 1)
        await store.set_backorder(sku, 4)
        await store.reserve([(sku, 4)], ttl=60, owner="u1")  # 3 owed
        with pytest.raises(StockConflict):
            await store.set_backorder(sku, 2)  # 3 owed already
        with pytest.raises(StockConflict):
            await store.adjust(sku, -2)  # would owe 5
        assert (await store.adjust(sku, -1)).available == -4
        assert (await store.restock(sku, 6)).available == 2  # the owed units arrived
        assert (await store.set_backorder(sku, 0)).backorder == 0
        with pytest.raises(OutOfStock):
            await store.reserve([(sku, 3)], ttl=60, owner="u1")
        with pytest.raises(InvalidRequest):
            await store.set_backorder(sku, -1)
        level = await store.stock(sku)
        assert (level.available, level.held, level.backorder) == (2, 4, 0)

    async def test_concurrent_holds_never_pass_the_backorder_cap(
        self, make_store: StoreFactory
    ) -> None:
        sku = _sku()
        async with make_store() as one, make_store() as two:
            await one.set_stock(sku, 5)
            await one.set_backorder(sku, 7)

            async def attempt(i: int) -> Reservation | None:
                try:
                    store = one if i % 2 else two
                    return await store.reserve([(sku, 1 + i % 3)], ttl=60, owner="u")
                except OutOfStock:
                    return None

            holds = [h for h in await asyncio.gather(*map(attempt, range(30))) if h is not None]
            taken = sum(h.total_quantity for h in holds)
            level = await one.stock(sku)
            assert taken <= 12
            assert (level.available, level.held) == (5 - taken, taken)
            assert sum(h.backordered for h in holds) == max(0, taken - 5) == level.backordered

    async def test_a_channel_sells_a_locations_backorder_room_above_its_safety_stock(
        self, store: ReservationStore
    ) -> None:
        sku = _sku()
        await store.set_stock(sku, 3, location="east")
        await store.set_backorder(sku, 10, location="east")
        await store.set_stock(sku, 2, location="west")
        web = Channel("web", [ChannelLocation("east", safety_stock=1), "west"])
        assert await store.available([sku], channel=web) == {sku: 14}  # 3 + 10 - 1, and 2
        hold = await store.reserve([(sku, 14)], ttl=60, owner="u1", channel=web)
        assert set(hold.allocations) == {
            Allocation(sku=sku, location="east", quantity=12, backordered=9),
            Allocation(sku=sku, location="west", quantity=2),
        }
        assert (await store.stock(sku, location="east")).available == -9
        await store.release(hold.id)
        assert (await store.stock(sku, location="east")).available == 3

    # --------------------------------------------------- purchase limits
    async def test_a_purchase_limit_counts_what_the_owner_holds_and_bought(
        self, store: ReservationStore
    ) -> None:
        sku, other = _sku(), _sku()
        await store.set_stock(sku, 100)
        await store.set_stock(other, 100)
        limit = await store.set_purchase_limit(sku, 3, window=dt.timedelta(hours=1))
        assert limit is not None
        assert (limit.quantity, limit.window) == (3, dt.timedelta(hours=1))
        assert await store.purchase_limit(sku) == limit
        first = await store.reserve([(sku, 2), (other, 5)], ttl=60, owner="u1")
        with pytest.raises(PurchaseLimitExceeded) as error:
            await store.reserve([(sku, 2)], ttl=60, owner="u1")
        assert [(o.sku, o.limit, o.used, o.requested) for o in error.value.over] == [(sku, 3, 2, 2)]
        assert (await store.stock(sku)).held == 2  # nothing more was held
        assert (await store.reserve([(sku, 3)], ttl=60, owner="u2")).total_quantity == 3
        await store.confirm(first.id)  # bought: it still counts
        with pytest.raises(PurchaseLimitExceeded):
            await store.reserve([(sku, 2)], ttl=60, owner="u1")
        last = await store.reserve([(sku, 1)], ttl=60, owner="u1")
        await store.release(last.id)  # released: it no longer counts
        assert (await store.reserve([(sku, 1)], ttl=60, owner="u1")).total_quantity == 1
        assert await store.set_purchase_limit(sku, 0, window=dt.timedelta(hours=1)) is None
        assert await store.purchase_limit(sku) is None
        assert (await store.reserve([(sku, 10)], ttl=60, owner="u1")).total_quantity == 10
        with pytest.raises(InvalidRequest):
            await store.set_purchase_limit(sku, 1, window=dt.timedelta(milliseconds=10))
        with pytest.raises(InvalidRequest):
            await store.set_purchase_limit(sku, -1, window=dt.timedelta(hours=1))

    async def test_a_purchase_limit_forgets_what_is_older_than_its_window(
        self, store: ReservationStore
    ) -> None:
        sku = _sku()
        await store.set_stock(sku, 10)
        await store.set_purchase_limit(sku, 1, window=dt.timedelta(seconds=1))
        await store.reserve([(sku, 1)], ttl=60, owner="u1")
        with pytest.raises(PurchaseLimitExceeded):
            await store.reserve([(sku, 1)], ttl=60, owner="u1")
        await asyncio.sleep(1.1)
        assert (await store.reserve([(sku, 1)], ttl=60, owner="u1")).total_quantity == 1

    async def test_concurrent_carts_of_one_owner_never_pass_the_limit(
        self, make_store: StoreFactory
    ) -> None:
        sku = _sku()
        async with make_store() as one, make_store() as two:
            await one.set_stock(sku, 100)
            await one.set_purchase_limit(sku, 5, window=dt.timedelta(hours=1))

            async def attempt(i: int) -> Reservation | None:
                try:
                    store = one if i % 2 else two
                    return await store.reserve([(sku, 1 + i % 2)], ttl=60, owner="drop-bot")
                except PurchaseLimitExceeded:
                    return None

            holds = [h for h in await asyncio.gather(*map(attempt, range(24))) if h is not None]
            taken = sum(h.total_quantity for h in holds)
            assert 4 <= taken <= 5
            assert (await one.stock(sku)).held == taken

    # ---------------------------------------------------------- amending
    async def test_amending_a_hold_keeps_what_it_holds_and_moves_only_the_difference(
        self, store: ReservationStore
    ) -> None:
        a, b, c = _together(store, 3)
        await store.set_stock(a, 1)  # the last unit
        await store.set_stock(b, 5)
        await store.set_stock(c, 5)
        hold = await store.reserve([(a, 1), (b, 2)], ttl=60, owner="u1")
        amended = await store.amend(hold.id, [(a, 1), (b, 4), (c, 1)])
        assert amended.id == hold.id
        assert amended.status is ReservationStatus.PENDING
        assert amended.expires_at == hold.expires_at
        assert [(line.sku, line.quantity) for line in amended.lines] == [(a, 1), (b, 4), (c, 1)]
        assert await store.get(hold.id) == amended
        levels = [await store.stock(s) for s in (a, b, c)]
        assert [(level.available, level.held) for level in levels] == [(0, 1), (1, 4), (4, 1)]
        smaller = await store.amend(hold.id, [(b, 1)])  # a and c gone, b down by 3
        levels = [await store.stock(s) for s in (a, b, c)]
        assert [(level.available, level.held) for level in levels] == [(1, 0), (4, 1), (5, 0)]
        assert await store.amend(hold.id, [(b, 1)]) == smaller  # the same cart: nothing moves
        await store.confirm(hold.id)
        assert (await store.stock(b)).sold == 1

    async def test_an_amendment_that_does_not_fit_changes_nothing(
        self, store: ReservationStore
    ) -> None:
        a, b = _together(store, 2)
        await store.set_stock(a, 3)
        await store.set_stock(b, 1)
        hold = await store.reserve([(a, 2)], ttl=60, owner="u1")
        await store.reserve([(b, 1)], ttl=60, owner="u2")
        await store.amend(hold.id, [(a, 3)])
        with pytest.raises(OutOfStock) as error:  # a would go back to 1, b is all held
            await store.amend(hold.id, [(a, 1), (b, 1)])
        assert [(s.sku, s.requested, s.available) for s in error.value.short] == [(b, 1, 0)]
        with pytest.raises(OutOfStock) as error:
            await store.amend(hold.id, [(a, 4)])  # 3 held, none more: in the new cart's terms
        assert [(s.sku, s.requested, s.available) for s in error.value.short] == [(a, 4, 3)]
        hold = await store.amend(hold.id, [(a, 2)])
        assert await store.get(hold.id) == hold
        assert (await store.stock(a)).held == 2
        with pytest.raises(InvalidRequest):
            await store.amend(hold.id, [])
        with pytest.raises(ReservationNotFound):
            await store.amend("no-such-hold", [(a, 1)])
        await store.release(hold.id)
        with pytest.raises(InvalidTransition):
            await store.amend(hold.id, [(a, 1)])
        late = await store.reserve([(a, 1)], ttl=SHORT_TTL, owner="u1")
        await _wait_past(late)
        with pytest.raises(HoldExpired):
            await store.amend(late.id, [(a, 2)])
        assert (await store.stock(a)).available == 3

    async def test_an_amendment_with_a_key_happens_once(self, store: ReservationStore) -> None:
        a = _sku()
        await store.set_stock(a, 10)
        hold = await store.reserve([(a, 1)], ttl=60, owner="u1")
        first = await store.amend(hold.id, [(a, 3)], idempotency_key="edit-1")
        await store.amend(hold.id, [(a, 5)])
        again = await store.amend(hold.id, [(a, 3)], idempotency_key="edit-1")  # a retry
        assert again.total_quantity == 5 != first.total_quantity  # not applied twice
        with pytest.raises(IdempotencyConflict):
            await store.amend(hold.id, [(a, 4)], idempotency_key="edit-1")
        assert (await store.stock(a)).held == 5

    async def test_amending_in_a_channel_returns_units_where_they_came_from(
        self, store: ReservationStore
    ) -> None:
        sku = _sku()
        await store.set_stock(sku, 2, location="east")
        await store.set_stock(sku, 5, location="west")
        web = Channel("web", ["east", "west"])
        hold = await store.reserve([(sku, 3)], ttl=60, owner="u1", channel=web)
        bigger = await store.amend(hold.id, [(sku, 5)], channel=web)
        assert set(bigger.allocations) == {
            Allocation(sku=sku, location="east", quantity=2),
            Allocation(sku=sku, location="west", quantity=3),
        }
        smaller = await store.amend(hold.id, [(sku, 2)], channel=web)
        assert smaller.allocations == (Allocation(sku=sku, location="east", quantity=2),)
        assert (await store.stock(sku, location="west")).available == 5

    async def test_concurrent_amendments_never_oversell(self, make_store: StoreFactory) -> None:
        sku = _sku()
        async with make_store() as one, make_store() as two:
            await one.set_stock(sku, 10)
            holds = [await one.reserve([(sku, 1)], ttl=60, owner=f"u{i}") for i in range(6)]

            async def grow(i: int) -> None:
                with contextlib.suppress(OutOfStock):
                    await (one if i % 2 else two).amend(holds[i % 6].id, [(sku, 1 + i % 4)])

            await asyncio.gather(*map(grow, range(24)))
            now = [await one.get(h.id) for h in holds]
            level = await one.stock(sku)
            held = sum(r.total_quantity for r in now)
            assert (level.available, level.held) == (10 - held, held)
            assert level.available >= 0

    # --------------------------------------------------------- locations
    async def test_stock_is_kept_per_location(self, store: ReservationStore) -> None:
        sku = _sku()
        await store.set_stock(sku, 4)
        await store.set_stock(sku, 10, location="east")
        await store.restock(sku, 2, location="west")
        assert (await store.adjust(sku, -3, location="east")).available == 7
        east = await store.stock(sku, location="east")
        assert east == StockLevel(sku=sku, location="east", available=7, held=0, sold=0)
        assert (await store.stock(sku)).available == 4  # the default location, as ever
        assert await store.available([sku]) == {sku: 4}
        assert await store.stock_by_location(sku) == {
            DEFAULT_LOCATION: StockLevel(sku=sku, available=4, held=0, sold=0),
            "east": east,
            "west": StockLevel(sku=sku, location="west", available=2, held=0, sold=0),
        }
        with pytest.raises(StockConflict):
            await store.adjust(sku, -8, location="east")
        with pytest.raises(InvalidRequest):
            await store.set_stock(sku, 1, location="no spaces")

    async def test_a_channel_sells_the_sum_of_its_locations_less_safety_stock(
        self, store: ReservationStore
    ) -> None:
        a, b = _sku(), _sku()
        await store.set_stock(a, 5, location="east")
        await store.set_stock(a, 1, location="west")
        await store.set_stock(b, 3, location="west")
        await store.set_stock(a, 100)  # the default location is not in the channel
        web = Channel("web", [ChannelLocation("east", safety_stock=2), "west"])
        assert await store.available([a, b], channel=web) == {a: 4, b: 3}
        strict = Channel("strict", [ChannelLocation("west", safety_stock=5)])
        assert await store.available([a, b], channel=strict) == {a: 0, b: 0}

    async def test_priority_takes_the_first_location_first_and_splits_a_line(
        self, store: ReservationStore
    ) -> None:
        sku = _sku()
        await store.set_stock(sku, 3, location="east")
        await store.set_stock(sku, 5, location="west")
        web = Channel("web", ["east", "west"])
        first = await store.reserve([(sku, 2)], ttl=60, owner="u1", channel=web)
        assert first.allocations == (Allocation(sku=sku, location="east", quantity=2),)
        split = await store.reserve([(sku, 4)], ttl=60, owner="u1", channel=web)
        assert set(split.allocations) == {
            Allocation(sku=sku, location="east", quantity=1),
            Allocation(sku=sku, location="west", quantity=3),
        }
        assert await store.get(split.id) == split
        assert (await store.stock(sku, location="east")).held == 3
        assert (await store.stock(sku, location="west")).held == 3
        with pytest.raises(OutOfStock) as error:
            await store.reserve([(sku, 3)], ttl=60, owner="u1", channel=web)
        assert [(s.sku, s.requested, s.available) for s in error.value.short] == [(sku, 3, 2)]

    async def test_most_stock_takes_the_fullest_location_first(
        self, store: ReservationStore
    ) -> None:
        sku = _sku()
        await store.set_stock(sku, 3, location="east")
        await store.set_stock(sku, 5, location="west")
        web = Channel("web", ["east", "west"], strategy=Strategy.MOST_STOCK)
        hold = await store.reserve([(sku, 2)], ttl=60, owner="u1", channel=web)
        assert hold.allocations == (Allocation(sku=sku, location="west", quantity=2),)
        tie = await store.reserve([(sku, 1)], ttl=60, owner="u1", channel=web)  # 3 and 3
        assert tie.allocations == (Allocation(sku=sku, location="east", quantity=1),)

    async def test_without_split_each_line_comes_from_one_location(
        self, store: ReservationStore
    ) -> None:
        a, b = _sku(), _sku()
        await store.set_stock(a, 2, location="east")
        await store.set_stock(a, 3, location="west")
        await store.set_stock(b, 1, location="east")
        whole = Channel("whole", ["east", "west"], split=Split.NONE)
        hold = await store.reserve([(a, 3), (b, 1)], ttl=60, owner="u1", channel=whole)
        assert set(hold.allocations) == {
            Allocation(sku=a, location="west", quantity=3),
            Allocation(sku=b, location="east", quantity=1),
        }
        with pytest.raises(OutOfStock) as error:  # 2 in the east: no one place has 2 now
            await store.reserve([(a, 2), (b, 1)], ttl=60, owner="u1", channel=whole)
        short = {(s.sku, s.requested, s.available) for s in error.value.short}
        assert short == {(b, 1, 0)}
        assert await store.available([a], channel=whole) == {a: 2}

    async def test_one_shipment_takes_the_whole_cart_from_one_location(
        self, store: ReservationStore
    ) -> None:
        a, b = _sku(), _sku()
        await store.set_stock(a, 5, location="east")
        await store.set_stock(b, 1, location="west")
        await store.set_stock(a, 2, location="west")
        await store.set_stock(b, 1, location="north")
        ship = Channel("ship", ["east", "west", "north"], split=Split.SHIPMENT)
        hold = await store.reserve([(a, 2), (b, 1)], ttl=60, owner="u1", channel=ship)
        assert set(hold.allocations) == {
            Allocation(sku=a, location="west", quantity=2),
            Allocation(sku=b, location="west", quantity=1),
        }
        # Together east and north could, but no one location holds both now.
        with pytest.raises(OutOfStock):
            await store.reserve([(a, 1), (b, 1)], ttl=60, owner="u1", channel=ship)
        assert (await store.stock(a, location="east")).available == 5

    async def test_each_transition_returns_units_where_they_came_from(
        self, store: ReservationStore
    ) -> None:
        sku = _sku()
        await store.set_stock(sku, 2, location="east")
        await store.set_stock(sku, 10, location="west")
        web = Channel("web", ["east", "west"])

        async def levels() -> dict[str, tuple[int, int, int]]:
            return {
                place: (level.available, level.held, level.sold)
                for place, level in (await store.stock_by_location(sku)).items()
            }

        released = await store.reserve([(sku, 3)], ttl=60, owner="u1", channel=web)
        assert await levels() == {"east": (0, 2, 0), "west": (9, 1, 0)}
        await store.release(released.id)
        assert await levels() == {"east": (2, 0, 0), "west": (10, 0, 0)}
        confirmed = await store.reserve([(sku, 3)], ttl=60, owner="u1", channel=web)
        assert (await store.confirm(confirmed.id)).allocations == confirmed.allocations
        assert await levels() == {"east": (0, 0, 2), "west": (9, 0, 1)}
        expiring = await store.reserve([(sku, 4)], ttl=SHORT_TTL, owner="u1", channel=web)
        assert expiring.allocations == (Allocation(sku=sku, location="west", quantity=4),)
        await _wait_past(expiring)
        assert [r.id for r in await store.expire_due()] == [expiring.id]
        assert await levels() == {"east": (0, 0, 2), "west": (9, 0, 1)}

    async def test_a_replay_in_a_channel_returns_the_first_allocations(
        self, store: ReservationStore
    ) -> None:
        sku = _sku()
        await store.set_stock(sku, 1, location="east")
        await store.set_stock(sku, 5, location="west")
        web = Channel("web", ["east", "west"])
        first = await store.reserve(
            [(sku, 2)], ttl=60, owner="u1", idempotency_key="k", channel=web
        )
        again = await store.reserve(
            [(sku, 2)], ttl=60, owner="u1", idempotency_key="k", channel=web
        )
        assert again == first
        assert (await store.stock(sku, location="west")).held == 1

    async def test_concurrent_reserves_in_a_channel_oversell_no_location(
        self, make_store: StoreFactory
    ) -> None:
        sku = _sku()
        stock = {"east": 7, "west": 5, "north": 3}
        web = Channel("web", list(stock), strategy=Strategy.MOST_STOCK)
        async with make_store() as one, make_store() as two:
            for place, units in stock.items():
                await one.set_stock(sku, units, location=place)

            async def attempt(store: ReservationStore, quantity: int) -> Reservation | None:
                try:
                    return await store.reserve([(sku, quantity)], ttl=60, owner="u", channel=web)
                except OutOfStock:
                    return None

            results = await asyncio.gather(
                *(attempt(one if i % 2 else two, 1 + i % 3) for i in range(40))
            )
            holds = [hold for hold in results if hold is not None]
            assert holds
            for hold in holds:  # each hold's allocations are exactly its line
                assert sum(a.quantity for a in hold.allocations) == hold.total_quantity
            levels = await one.stock_by_location(sku)
            for place, units in stock.items():
                taken = sum(
                    a.quantity for hold in holds for a in hold.allocations if a.location == place
                )
                level = levels[place]
                assert (level.available, level.held) == (units - taken, taken), place
                assert level.available >= 0

    # ---------------------------------------------------------- property
    @settings(
        max_examples=60,
        deadline=None,
        # make_store gives each example fresh SKUs, so sharing the fixture is
        # safe; each backend's subclass runs this same method (an "executor").
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,
        ],
    )
    @given(operations=st.lists(_OPERATIONS, min_size=1, max_size=25))
    def test_random_operations_keep_every_invariant(
        self, make_store: StoreFactory, operations: list[tuple[Any, ...]]
    ) -> None:
        asyncio.run(_play(make_store, operations))


class KitStoreContract(ReservationStoreContract):
    """The reservation contract, and what a `KitStore` adds: kits held by their components.

    Subclass it instead of `ReservationStoreContract` for a store that knows kits.
    """

    async def test_a_kit_is_what_its_components_make(self, store: ReservationStore) -> None:
        kits = _kits(store)
        mug, tea, box = _sku(), _sku(), _sku()
        await store.set_stock(mug, 7)
        await store.set_stock(tea, 5)
        kit = await kits.define_kit(box, [(mug, 2), (tea, 1)])
        assert (kit.sku, kit.version) == (box, 1)
        assert kit.components == (
            ReservationLine(sku=mug, quantity=2),
            ReservationLine(sku=tea, quantity=1),
        )
        assert (await kits.kits())[box].components == kit.components
        assert await store.available([box, mug]) == {box: 3, mug: 7}

    async def test_reserving_a_kit_holds_its_components_and_each_transition_returns_them(
        self, store: ReservationStore
    ) -> None:
        kits = _kits(store)
        mug, tea, box = _sku(), _sku(), _sku()
        await store.set_stock(mug, 7)
        await store.set_stock(tea, 5)
        await kits.define_kit(box, [(mug, 2), (tea, 1)])
        hold = await store.reserve([(box, 2), (mug, 1)], ttl=60, owner="u1")
        assert [(line.sku, line.quantity) for line in hold.lines] == [(box, 2), (mug, 1)]
        assert set(hold.allocations) == {
            Allocation(sku=mug, location=DEFAULT_LOCATION, quantity=5),
            Allocation(sku=tea, location=DEFAULT_LOCATION, quantity=2),
        }
        assert await store.get(hold.id) == hold
        assert (await store.stock(mug)).held == 5
        assert await store.available([box]) == {box: 1}
        await store.release(hold.id)
        assert [(await store.stock(s)).available for s in (mug, tea)] == [7, 5]
        sold = await store.reserve([(box, 1)], ttl=60, owner="u1")
        await store.confirm(sold.id)
        assert [(await store.stock(s)).sold for s in (mug, tea)] == [2, 1]

    async def test_lines_sharing_a_component_are_summed_so_none_oversells(
        self, store: ReservationStore
    ) -> None:
        kits = _kits(store)
        mug, box, pair = _sku(), _sku(), _sku()
        await store.set_stock(mug, 4)
        await kits.define_kit(box, [(mug, 1)])
        await kits.define_kit(pair, [(mug, 2)])
        # Each line alone fits (3 of 4, 2 of 4); together they need 5.
        with pytest.raises(OutOfStock) as error:
            await store.reserve([(box, 3), (pair, 1)], ttl=60, owner="u1")
        assert {line.sku for line in error.value.short} == {box, pair}
        assert (await store.stock(mug)).available == 4  # nothing held
        hold = await store.reserve([(box, 2), (pair, 1)], ttl=60, owner="u1")
        assert hold.allocations == (Allocation(sku=mug, location=DEFAULT_LOCATION, quantity=4),)

    async def test_concurrent_kit_carts_never_oversell_a_component(
        self, make_store: StoreFactory
    ) -> None:
        mug, tea, box = _sku(), _sku(), _sku()
        async with make_store() as one, make_store() as two:
            await one.set_stock(mug, 9)
            await one.set_stock(tea, 4)
            await _kits(one).define_kit(box, [(mug, 2), (tea, 1)])
            carts = [[(box, 1)], [(box, 1), (mug, 1)], [(mug, 2)], [(tea, 1), (box, 1)]]

            async def attempt(i: int) -> Reservation | None:
                try:
                    store = one if i % 2 else two
                    return await store.reserve(carts[i % len(carts)], ttl=60, owner="u")
                except OutOfStock:
                    return None

            holds = [h for h in await asyncio.gather(*map(attempt, range(30))) if h is not None]
            assert holds
            for sku, units in ((mug, 9), (tea, 4)):
                taken = sum(a.quantity for h in holds for a in h.holdings if a.sku == sku)
                level = await one.stock(sku)
                assert (level.available, level.held) == (units - taken, taken), sku
                assert level.available >= 0

    async def test_a_new_definition_reaches_every_store_at_once(
        self, make_store: StoreFactory
    ) -> None:
        mug, tea, box = _sku(), _sku(), _sku()
        async with make_store() as one, make_store() as two:
            await one.set_stock(mug, 10)
            await one.set_stock(tea, 10)
            await _kits(one).define_kit(box, [(mug, 1)])
            before = await two.reserve([(box, 1)], ttl=60, owner="u")  # two reads the kits
            redefined = await _kits(one).define_kit(box, [(tea, 2)])
            assert redefined.version == 2
            after = await two.reserve([(box, 1)], ttl=60, owner="u")
            tea_only = Allocation(sku=tea, location=DEFAULT_LOCATION, quantity=2)
            assert after.allocations == (tea_only,)
            assert await two.available([box]) == {box: 4}
            # The hold made before keeps (and returns) what it took.
            await two.release(before.id)
            assert (await one.stock(mug)).available == 10
            assert await _kits(one).remove_kit(box) is True
            assert await _kits(two).remove_kit(box) is False
            with pytest.raises(OutOfStock):  # a kit no longer: a SKU without stock
                await two.reserve([(box, 1)], ttl=60, owner="u")

    async def test_a_kit_of_kits_and_bad_components_are_refused(
        self, store: ReservationStore
    ) -> None:
        kits = _kits(store)
        mug, box, crate = _sku(), _sku(), _sku()
        await kits.define_kit(box, [(mug, 1)])
        with pytest.raises(InvalidRequest, match="are kits"):
            await kits.define_kit(crate, [(box, 2)])
        with pytest.raises(InvalidRequest, match="is a component of 1 kit"):
            await kits.define_kit(mug, [(crate, 1)])
        with pytest.raises(InvalidRequest):
            await kits.define_kit(crate, [])
        with pytest.raises(InvalidRequest):
            await kits.define_kit(crate, [(crate, 1)])
        with pytest.raises(InvalidRequest):
            await kits.define_kit(crate, [(mug, 1), (mug, 2)])
        with pytest.raises(InvalidRequest):
            await kits.define_kit(crate, [(mug, 0)])
        assert set(await kits.kits()) == {box}

    async def test_a_sku_stops_being_a_component_when_no_kit_uses_it(
        self, store: ReservationStore
    ) -> None:
        kits = _kits(store)
        a, b, box, other = _sku(), _sku(), _sku(), _sku()
        await kits.define_kit(box, [(a, 1)])
        await kits.define_kit(other, [(a, 1)])
        await kits.define_kit(box, [(b, 1)])  # a is still other's component
        with pytest.raises(InvalidRequest, match="is a component of 1 kit"):
            await kits.define_kit(a, [(b, 1)])
        await kits.remove_kit(other)
        await kits.define_kit(a, [(_sku(), 1)])  # no kit uses a now
        with pytest.raises(InvalidRequest, match="is a component of 1 kit"):
            await kits.define_kit(b, [(_sku(), 1)])
        await kits.remove_kit(box)
        await kits.define_kit(b, [(_sku(), 1)])
        assert set(await kits.kits()) == {a, b}

    async def test_a_kit_in_a_channel_takes_components_from_its_locations(
        self, store: ReservationStore
    ) -> None:
        kits = _kits(store)
        mug, tea, box = _sku(), _sku(), _sku()
        await store.set_stock(mug, 1, location="east")
        await store.set_stock(mug, 3, location="west")
        await store.set_stock(tea, 2, location="west")
        await kits.define_kit(box, [(mug, 2), (tea, 1)])
        web = Channel("web", ["east", "west"])
        assert await store.available([box], channel=web) == {box: 2}
        hold = await store.reserve([(box, 1)], ttl=60, owner="u1", channel=web)
        assert set(hold.allocations) == {
            Allocation(sku=mug, location="east", quantity=1),
            Allocation(sku=mug, location="west", quantity=1),
            Allocation(sku=tea, location="west", quantity=1),
        }
        await store.release(hold.id)
        assert (await store.stock(mug, location="east")).available == 1

    async def test_a_kit_cart_replays_with_its_key(self, store: ReservationStore) -> None:
        kits = _kits(store)
        mug, box = _sku(), _sku()
        await store.set_stock(mug, 3)
        await kits.define_kit(box, [(mug, 2)])
        first = await store.reserve([(box, 1)], ttl=60, owner="u1", idempotency_key="k")
        again = await store.reserve([(box, 1)], ttl=60, owner="u1", idempotency_key="k")
        assert again == first
        assert (await store.stock(mug)).held == 2

    async def test_a_kit_component_on_backorder_is_marked_so(self, store: ReservationStore) -> None:
        kits = _kits(store)
        mug, tea, box = _together(store, 3)
        await store.set_stock(mug, 2)
        await store.set_stock(tea, 0)
        await store.set_backorder(tea, 1)
        await kits.define_kit(box, [(mug, 2), (tea, 1)])
        hold = await store.reserve([(box, 1)], ttl=60, owner="u1")
        assert set(hold.allocations) == {
            Allocation(sku=mug, location=DEFAULT_LOCATION, quantity=2),
            Allocation(sku=tea, location=DEFAULT_LOCATION, quantity=1, backordered=1),
        }
        assert hold.backordered == 1
        assert await store.get(hold.id) == hold

    async def test_amending_a_kit_cart_moves_only_the_components_that_change(
        self, store: ReservationStore
    ) -> None:
        kits = _kits(store)
        mug, tea, box = _together(store, 3)
        await store.set_stock(mug, 4)
        await store.set_stock(tea, 2)
        await kits.define_kit(box, [(mug, 2), (tea, 1)])
        hold = await store.reserve([(box, 1)], ttl=60, owner="u1")
        amended = await store.amend(hold.id, [(box, 1), (mug, 2)])  # the last 2 mugs
        assert [(line.sku, line.quantity) for line in amended.lines] == [(box, 1), (mug, 2)]
        assert sorted((a.sku, a.quantity) for a in amended.allocations) == sorted(
            [(mug, 4), (tea, 1)]
        )
        with pytest.raises(OutOfStock):
            await store.amend(hold.id, [(box, 2), (mug, 2)])
        assert await store.get(hold.id) == amended
        await store.release(hold.id)
        assert [(await store.stock(s)).available for s in (mug, tea)] == [4, 2]


def _kits(store: ReservationStore) -> KitStore:
    assert isinstance(store, KitStore), f"{type(store).__name__} does not keep kits"
    return store
