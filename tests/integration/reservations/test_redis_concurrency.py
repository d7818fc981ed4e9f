"""Reservation invariants under real concurrency on a real Redis 7."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid

from commercekit.errors import HoldExpired, InvalidTransition, OutOfStock
from commercekit.reservations import ExpirySweeper, Reservation, ReservationStatus
from commercekit.testing.contracts import StoreFactory, assert_conserved


async def test_2000_concurrent_reserves_on_100_units_hold_exactly_100(
    make_redis_store: StoreFactory,
) -> None:
    sku = f"HOT-{uuid.uuid4().hex[:8]}"
    async with contextlib.AsyncExitStack() as stack:
        replicas = [await stack.enter_async_context(make_redis_store()) for _ in range(4)]
        await replicas[0].set_stock(sku, 100)
        lowest_seen = 100
        done = asyncio.Event()

        async def watch() -> None:
            nonlocal lowest_seen
            while not done.is_set():
                level = await replicas[0].stock(sku)
                lowest_seen = min(lowest_seen, level.available)
                assert level.available + level.held == 100

        gates = [asyncio.Semaphore(60) for _ in replicas]

        async def attempt(i: int) -> Reservation | None:
            store, gate = replicas[i % 4], gates[i % 4]
            async with gate:
                try:
                    return await store.reserve([(sku, 1)], ttl=60, owner=f"user-{i}")
                except OutOfStock:
                    return None

        watcher = asyncio.create_task(watch())
        results = await asyncio.gather(*(attempt(i) for i in range(2000)))
        done.set()
        await watcher

        holds = [r for r in results if r is not None]
        assert len(holds) == 100
        assert len({h.id for h in holds}) == 100
        level = await replicas[0].stock(sku)
        assert (level.available, level.held, level.sold) == (0, 100, 0)
        assert lowest_seen >= 0
        await assert_conserved(replicas[0], {sku: 100}, holds)


async def test_two_sweepers_racing_over_1000_due_holds_restore_each_unit_once(
    make_redis_store: StoreFactory,
) -> None:
    sku = f"SWEEP-{uuid.uuid4().hex[:8]}"
    reported: list[list[str]] = [[], []]
    async with make_redis_store() as one, make_redis_store() as two:
        await one.set_stock(sku, 1000)
        holds = await asyncio.gather(
            *(one.reserve([(sku, 1)], ttl=0.2, owner="u") for _ in range(1000))
        )
        assert (await one.stock(sku)).held == 1000
        sweepers = [
            ExpirySweeper(
                store,
                interval=0.01,
                batch_size=25,
                jitter=0.5,
                on_expired=lambda r, n=n: reported[n].append(r.id),
            )
            for n, store in enumerate((one, two))
        ]
        async with sweepers[0], sweepers[1]:
            async with asyncio.timeout(30):
                while (await one.stock(sku)).held:  # noqa: ASYNC110 - polling Redis, not a flag
                    await asyncio.sleep(0.02)
        all_reported = reported[0] + reported[1]
        assert len(all_reported) == len(set(all_reported)) == 1000
        assert set(all_reported) == {h.id for h in holds}
        assert reported[0], "both sweepers did part of the work"
        assert reported[1], "both sweepers did part of the work"
        assert sweepers[0].expired_total + sweepers[1].expired_total == 1000
        level = await one.stock(sku)
        assert (level.available, level.held, level.sold) == (1000, 0, 0)
        await assert_conserved(one, {sku: 1000}, list(holds))


async def test_confirm_racing_expiry_has_exactly_one_winner(
    make_redis_store: StoreFactory,
) -> None:
    sku = f"RACE-{uuid.uuid4().hex[:8]}"
    rounds = 150
    async with make_redis_store() as payments, make_redis_store() as sweeper:
        await payments.set_stock(sku, rounds)
        outcomes = {"confirmed": 0, "expired": 0}
        holds = []
        for i in range(rounds):
            hold = await payments.reserve([(sku, 1)], ttl=0.02, owner="u")
            holds.append(hold)
            # Aim both at the deadline, from 4 ms before it to 2 ms after.
            aim = (i % 7 - 4) / 1000
            wait = (hold.expires_at - dt.datetime.now(dt.UTC)).total_seconds() + aim
            await asyncio.sleep(max(wait, 0))

            async def pay(rid: str = hold.id) -> str:
                try:
                    await payments.confirm(rid)
                except HoldExpired as exc:
                    status, ending = exc.reservation.status, "late, expired by the payment"
                except InvalidTransition as exc:
                    status, ending = exc.reservation.status, "late, expired by the sweeper"
                else:
                    return "confirmed"
                assert status is ReservationStatus.EXPIRED
                return ending

            paid, swept = await asyncio.gather(pay(), sweeper.expire_due(limit=10))
            final = await payments.get(hold.id)
            if paid == "confirmed":
                assert final.status is ReservationStatus.CONFIRMED
                assert hold.id not in {r.id for r in swept}
                outcomes["confirmed"] += 1
            else:
                assert final.status is ReservationStatus.EXPIRED
                assert (hold.id in {r.id for r in swept}) == (
                    paid == "late, expired by the sweeper"
                )
                outcomes["expired"] += 1
        # Aiming around the deadline makes both endings happen (about 1 in 3 confirms).
        assert outcomes["confirmed"] > 0
        assert outcomes["expired"] > 0
        level = await payments.stock(sku)
        assert level.held == 0
        assert level.sold == outcomes["confirmed"]
        assert level.available == outcomes["expired"]
        await assert_conserved(payments, {sku: rounds}, holds)
