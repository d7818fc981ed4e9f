"""Dependencies that refuse or forget: PostgreSQL answering 57P03, Redis losing its keys.

A stopped server refuses the TCP connection; a server that is starting up
accepts it and answers SQLSTATE 57P03 ("cannot connect now"), which
SQLAlchemy raises as a plain `DBAPIError`. Both are transient
(`commercekit.transient.is_transient`): the services answer 503 with
``Retry-After`` meanwhile, and their consumers wait it out, so no payment
event is dead-lettered and every payment settles once PostgreSQL serves
again. And when Redis loses everything, an idempotency key still replays
its reservation, whatever became of it, for its whole TTL. The stack is
one of this module's own (`fault_stack`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import time
from collections.abc import Iterator

import pytest

from tests.e2e.reliability.conftest import Tried
from tests.e2e.reliability.faults_helpers import (
    ADMIN_EMAIL,
    Books,
    FaultStack,
    Shoppers,
    eventually,
    fault_stack,
    settled,
)
from tests.e2e.reliability.test_faults import all_ready, dead_letters

REFUSAL_SECONDS = 8.0
"""How long PostgreSQL refuses: more than the 5 attempts a bad event gets (about 3 s)."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    """The reference app on PostgreSQL, Redis and Kafka of its own."""
    with fault_stack(tmp_path_factory.mktemp("refusals")) as running:
        yield running


def _signal_replicas(stack: FaultStack, service: str, sig: signal.Signals) -> None:
    for process in stack.processes(service):
        assert process.pid is not None, f"{service} is not running"
        os.killpg(process.pid, sig)


async def test_postgres_refusing_connections_57p03_answers_503_and_every_payment_settles(
    stack: FaultStack, tried: Tried
) -> None:
    await settled(lambda: all_ready(stack), "every service to be ready", 90)
    started = dt.datetime.now(dt.UTC)
    async with Shoppers(stack) as shoppers:
        admin = await shoppers.sign_in(ADMIN_EMAIL)
        product = await shoppers.product(admin, stock=10, price="2.00")
        crowd = await shoppers.many(3)
        held = []
        for shopper in crowd:
            answer = await shopper.reserve(product["id"])
            assert answer.status_code == 201, answer.text
            held.append(answer.json()["reservationId"])

        # The payments reach Kafka while the inventory replicas are frozen, so their
        # settlement is still to do when PostgreSQL starts refusing.
        _signal_replicas(stack, "inventory", signal.SIGSTOP)
        try:
            for shopper, rid in zip(crowd, held, strict=True):
                paid = await shopper.pay(rid, "2.00")
                assert paid.status_code == 202, paid.text

            async def relayed() -> bool:
                return not any(await stack.metric("worker", "refapp_worker_outbox_backlog"))

            await eventually(relayed, "the payment events to reach Kafka", within=30)
            await asyncio.to_thread(stack.postgres.refuse_connections)
        finally:
            _signal_replicas(stack, "inventory", signal.SIGCONT)

        try:
            began = time.monotonic()
            refused = await crowd[0].pay(held[0], "2.00")
            took = time.monotonic() - began
            assert refused.status_code == 503, refused.text
            assert refused.headers.get("retry-after"), refused.headers
            assert refused.json()["error"]["code"] == "backend_unavailable", refused.text
            assert took < 5, f"the 503 took {took:.1f}s"

            async def settlement_waits() -> bool:  # a consumer met the refusal and waits
                return any(
                    "(payment.confirmed): a dependency is down" in str(record.get("message"))
                    and dt.datetime.fromisoformat(record["time"]) >= started
                    for service in ("inventory", "email")
                    for record in stack.logs(service)
                )

            await eventually(settlement_waits, "a consumer to meet the refusal", within=30)
            await asyncio.sleep(REFUSAL_SECONDS)
        finally:
            await asyncio.to_thread(stack.postgres.accept_connections)

        async def confirmed() -> bool:
            for shopper, rid in zip(crowd, held, strict=True):
                answer = await shopper.reservation(rid)
                if answer.status_code != 200 or answer.json()["status"] != "CONFIRMED":
                    return False
            return True

        await eventually(confirmed, "every payment to settle its reservation", within=60)
        assert dead_letters(stack, started) == []
        for shopper, rid in zip(crowd, held, strict=True):
            payment = (await shopper.payment(rid)).json()
            assert (payment["status"], payment["refunds"]) == ("confirmed", []), payment
    tried(
        "fault survived",
        f"PostgreSQL refusing connections with 57P03 (as when starting up) for "
        f"{REFUSAL_SECONDS:.0f}s with 3 payment events to settle: POST /api/v1/payment "
        "answered 503 with Retry-After, no event dead-lettered, every payment settled once "
        "it served again",
    )


async def test_an_idempotency_key_replays_a_settled_reservation_after_redis_is_flushed(
    stack: FaultStack, tried: Tried
) -> None:
    await settled(lambda: all_ready(stack), "every service to be ready", 90)
    async with Shoppers(stack) as shoppers, Books(stack) as books:
        admin = await shoppers.sign_in(ADMIN_EMAIL)
        product = await shoppers.product(admin, stock=10, price="2.00")
        shopper = await shoppers.sign_in()
        paid = await shopper.reserve(product["id"], 2, key="cart-paid")
        cancelled = await shopper.reserve(product["id"], 3, key="cart-cancelled")
        assert (paid.status_code, cancelled.status_code) == (201, 201), (paid.text, cancelled.text)
        paid_id, cancelled_id = paid.json()["reservationId"], cancelled.json()["reservationId"]
        assert (await shopper.pay(paid_id, "4.00")).status_code == 202
        assert (await shopper.cancel(cancelled_id)).status_code == 200

        async def confirmed() -> bool:
            answer = await shopper.reservation(paid_id)
            return answer.status_code == 200 and answer.json()["status"] == "CONFIRMED"

        await eventually(confirmed, "the payment to settle", within=60)
        before = await books.conserved(product["sku"])
        await books.redis.flushall()

        again = {
            key: await shopper.reserve(product["id"], quantity, key=key)
            for key, quantity in (("cart-paid", 2), ("cart-cancelled", 3))
        }
        for key, answer in again.items():
            assert answer.status_code in (200, 201), (key, answer.text)
        assert {k: a.json()["reservationId"] for k, a in again.items()} == {
            "cart-paid": paid_id,
            "cart-cancelled": cancelled_id,
        }, "a retried key made a new hold"
        statuses = {
            rid: (await shopper.reservation(rid)).json()["status"]
            for rid in (paid_id, cancelled_id)
        }
        assert statuses == {paid_id: "CONFIRMED", cancelled_id: "RELEASED"}
        after = await books.conserved(product["sku"])
        assert after.redis == before.redis, "the stock did not change"
        assert after.redis_pending == {}
    tried(
        "fault survived",
        "Redis FLUSHALL after a paid and a cancelled reservation: retrying both with their "
        "Idempotency-Keys replayed the same reservations (CONFIRMED, RELEASED), no new hold, "
        "stock unchanged",
    )
