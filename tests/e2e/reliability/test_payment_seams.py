"""Payments at their seams, on a fault stack of their own: the deadline, lost outcomes, status.

A payment accepted before its hold's deadline is confirmed even when Kafka
is down until well past it; a payment whose outcome event was lost is
re-driven by the worker and settles once; a paid order reads as paid after
a declined retry.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlalchemy import text

from tests.e2e.reliability.conftest import Tried
from tests.e2e.reliability.faults_helpers import (
    Books,
    FaultStack,
    Shopper,
    Shoppers,
    eventually,
    fault_stack,
    settled,
)

ADMIN = "fault-admin@example.com"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    with fault_stack(tmp_path_factory.mktemp("payment-seams")) as running:
        yield running


@pytest.fixture
async def shoppers(stack: FaultStack) -> AsyncIterator[Shoppers]:
    async with Shoppers(stack) as signed:
        yield signed


@pytest.fixture
async def books(stack: FaultStack) -> AsyncIterator[Books]:
    async with Books(stack) as opened:
        yield opened


async def payment_of(shopper: Shopper, rid: str, status: str) -> dict[str, Any] | None:
    answer = await shopper.payment(rid)
    body: dict[str, Any] = answer.json()
    done = body.get("status") == status and all(
        r["status"] == "completed" for r in body.get("refunds", [])
    )
    return body if done else None


async def until(moment: dt.datetime, before: float) -> None:
    await asyncio.sleep(max(0.0, (moment - dt.datetime.now(dt.UTC)).total_seconds() - before))


async def test_a_payment_accepted_before_the_deadline_survives_a_kafka_outage(
    stack: FaultStack, shoppers: Shoppers, books: Books, tried: Tried
) -> None:
    admin = await shoppers.sign_in(ADMIN)
    product = await shoppers.product(admin, stock=4, price="2.00")
    shopper = await shoppers.sign_in()
    durable = books.durable()
    on_time = await durable.reserve([(product["sku"], 2)], ttl=4, owner=shopper.id)
    late = await durable.reserve([(product["sku"], 1)], ttl=1, owner=shopper.id)
    await asyncio.to_thread(stack.kafka.stop)
    try:
        await until(late.expires_at, before=-0.6)  # past the deadline, before a sweep settles it
        assert (await shopper.pay(late.id, "2.00")).status_code == 202
        await until(on_time.expires_at, before=0.3)
        paid = await shopper.pay(on_time.id, "4.00")
        answered = dt.datetime.now(dt.UTC)
        assert paid.status_code == 202, paid.text
        assert answered < on_time.expires_at, "paid too late to prove anything"
        await asyncio.sleep(8)  # Kafka stays down well past the deadline; the sweepers run
    finally:
        await asyncio.to_thread(stack.kafka.start)

    confirmed = await eventually(
        lambda: payment_of(shopper, on_time.id, "confirmed"), "the on-time payment", within=120
    )
    assert confirmed["refunds"] == []
    refunded = await eventually(
        lambda: payment_of(shopper, late.id, "refunded"), "the late payment's refund", within=60
    )
    assert [r["reason"] for r in refunded["refunds"]] == ["LATE_PAYMENT"]
    final = await books.conserved(product["sku"])
    assert (final.redis.available, final.redis.held, final.redis.sold) == (2, 0, 2)
    tried(
        "fault survived",
        "a payment answered 0.3 s before its hold's deadline, Kafka down 8 s past it: "
        "confirmed, not refunded (the hold was pinned at acceptance); one paid after the "
        "deadline refunded once as LATE_PAYMENT; no unit oversold",
    )


async def test_a_payment_whose_outcome_event_was_lost_is_redriven_once(
    stack: FaultStack, shoppers: Shoppers, books: Books, tried: Tried
) -> None:
    admin = await shoppers.sign_in(ADMIN)
    product = await shoppers.product(admin, stock=3, price="2.00")
    shopper = await shoppers.sign_in()
    held = await shopper.reserve(product["id"], 1)
    assert held.status_code == 201, held.text
    rid = held.json()["reservationId"]
    workers = stack.processes("worker")  # the relays: frozen, so the event can be lost
    for process in workers:
        assert process.pid is not None
        os.killpg(process.pid, signal.SIGSTOP)
    try:
        paid = await shopper.pay(rid, "2.00")
        assert paid.status_code == 202, paid.text
        async with books.engine.begin() as conn:
            deleted = await conn.execute(
                text("DELETE FROM commercekit_outbox WHERE event_id = :id"),
                {"id": f"payment:{paid.json()['paymentId']}"},
            )
        assert deleted.rowcount == 1
    finally:
        for process in workers:
            if process.pid is not None:
                os.killpg(process.pid, signal.SIGCONT)
    assert (await shopper.payment(rid)).json()["status"] == "processing"

    found = await eventually(
        lambda: payment_of(shopper, rid, "confirmed"), "the re-driven payment", within=60
    )
    assert found["refunds"] == []
    assert (await shopper.reservation(rid)).json()["status"] == "CONFIRMED"
    async with books.engine.connect() as conn:
        redrives = await conn.scalar(
            text("SELECT redrives FROM commercekit_payments WHERE id = :id"),
            {"id": found["paymentId"]},
        )
    assert redrives == 1  # two worker replicas, one re-drive
    final = await books.conserved(product["sku"])
    assert (final.redis.available, final.redis.held, final.redis.sold) == (2, 0, 1)
    tried(
        "fault survived",
        "a payment's outcome event lost (deleted before the relay sent it): the worker "
        "re-drove it once after PAYMENT_REDRIVE_AFTER_SECONDS (two replicas), it settled "
        "confirmed, once",
    )


async def test_a_paid_order_reads_as_paid_after_a_declined_retry(
    stack: FaultStack, shoppers: Shoppers, tried: Tried
) -> None:
    admin = await shoppers.sign_in(ADMIN)
    product = await shoppers.product(admin, stock=2, price="2.00")
    shopper = await shoppers.sign_in()
    held = await shopper.reserve(product["id"], 1)
    rid = held.json()["reservationId"]
    paid = await shopper.pay(rid, "2.00")
    await eventually(lambda: payment_of(shopper, rid, "confirmed"), "the payment to settle")
    body = {"reservationId": rid, "amount": "2.00", "paymentMethod": "tok_declined"}
    retry = await shopper.post("/api/v1/payment", json=body)
    assert retry.status_code == 202, retry.text

    async def declined_settled() -> None:
        shown = (await shopper.payment(rid)).json()
        assert (shown["paymentId"], shown["status"]) == (paid.json()["paymentId"], "confirmed")
        assert (await shopper.reservation(rid)).json()["status"] == "CONFIRMED"

    await asyncio.sleep(2)  # the decline's event settles meanwhile
    await settled(declined_settled, "the paid order to read as paid", 30)
    tried("fault survived", "a declined retry after a paid order: the order still reads as paid")
