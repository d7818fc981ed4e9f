"""Faults: Kafka, Redis and PostgreSQL outages, crashed processes, and what /ready says.

Every test breaks something in a stack of its own (`fault_stack`: its own
PostgreSQL, Redis and Kafka, the services as processes behind nginx), then
asserts, without helping, that the stack comes back to the invariants of
the product: per SKU, available + held + sold == stock added in Redis and
in the ledger alike, every reservation in one state in both, no event lost,
every late payment refunded exactly once, and clear 503 answers (JSON,
quick) while a dependency is missing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from reference_app.launch import UvicornServer

from commercekit.testing.servers import Server
from tests.e2e.reliability.conftest import Tried
from tests.e2e.reliability.faults_helpers import (
    ADMIN_EMAIL,
    DEPENDENCIES,
    Books,
    FaultStack,
    Shopper,
    Shoppers,
    duplicates,
    eventually,
    fault_stack,
    mails,
    mails_to,
    settled,
)

QUICK = 5.0
"""Seconds within which every answer comes while a dependency is down (no hang)."""


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    """The reference app on PostgreSQL, Redis and Kafka of its own (the tests break them)."""
    with fault_stack(tmp_path_factory.mktemp("faults")) as running:
        yield running


@pytest.fixture(autouse=True)
async def healthy(stack: FaultStack) -> AsyncIterator[None]:
    """Start each test on a whole, ready stack, and leave it whole even after a failure."""
    await _heal(stack)
    yield
    await _heal(stack)


async def _heal(stack: FaultStack) -> None:
    # (Re)starts happen on the main thread: the harness ties a child's life to the thread
    # that started it, so nothing outlives the test run. Kafka is the exception (see
    # `start_in_thread`). Stops may run in threads.
    for server in (stack.redis, stack.postgres):
        if not server.running:
            server.start()
    if not stack.kafka.running:
        await start_in_thread(stack.kafka)
    for group in stack.app.processes.values():
        for process in group:
            if not process.running:
                process.start()

    await settled(lambda: all_ready(stack), "every service to be ready", 90)


async def start_in_thread(server: Server) -> None:
    """Start a server from a worker thread: KafkaServer's readiness probe calls
    asyncio.run(), which cannot run inside the test's event loop. The harness then
    stops it at interpreter exit (not with this process); the module fixture stops it
    before that."""
    await asyncio.to_thread(server.start)


@pytest.fixture
async def shoppers(stack: FaultStack) -> AsyncIterator[Shoppers]:
    """Signs shoppers in on the fault stack's gateway."""
    async with Shoppers(stack) as signed:
        yield signed


@pytest.fixture
async def admin(shoppers: Shoppers) -> Shopper:
    """The shopkeeper."""
    return await shoppers.sign_in(ADMIN_EMAIL)


@pytest.fixture
async def books(stack: FaultStack) -> AsyncIterator[Books]:
    """Read-only views of the fault stack's Redis and ledger."""
    async with Books(stack) as opened:
        yield opened


# ------------------------------------------------------------------- helpers
@dataclass
class Answer:
    """One HTTP answer, how long it took, and whether the fault was on meanwhile."""

    status: int
    body: Any
    seconds: float
    during: bool


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def assert_unavailable(answer: Answer, what: str) -> None:
    """A clear 'retry later': 503 with the JSON error body, quickly."""
    assert answer.seconds < QUICK, f"{what} took {answer.seconds:.1f}s"
    assert answer.status == 503, f"{what}: {answer.status} {answer.body}"
    assert isinstance(answer.body, dict), f"{what}: not JSON: {answer.body!r}"
    assert answer.body["error"]["code"] == "backend_unavailable", answer.body


async def timed(call: Any) -> tuple[httpx.Response, float]:
    """Await an HTTP call; the answer and how long it took."""
    started = time.monotonic()
    response = await call
    return response, time.monotonic() - started


async def stock_of(shopper: Shopper, product_id: str) -> int:
    """The public stock of a product (200 expected)."""
    answer = await shopper.get(f"/api/v1/products/{product_id}")
    assert answer.status_code == 200, answer.text
    stock: int = answer.json()["stock"]
    return stock


async def quiet(stack: FaultStack) -> None:
    """Wait until nothing is in flight: both relays' outbox backlog and every consumer's lag 0."""

    async def drained() -> bool:
        backlog = await stack.metric("worker", "refapp_worker_outbox_backlog")
        lags = [
            *await stack.metric("inventory", "refapp_inventory_consumer_lag"),
            *await stack.metric("payment", "refapp_payment_consumer_lag"),
            *await stack.metric("email", "refapp_email_consumer_lag"),
        ]
        return not any(backlog) and not any(lags)

    await eventually(drained, "the outbox and the consumers to drain")


def dead_letters(stack: FaultStack, since: dt.datetime) -> list[str]:
    """Events a consumer gave up on (sent to the dead-letter topic) since `since`."""
    return [
        f"{record.get('service')}: {record['message']}"
        for service in ("inventory", "payment", "email")
        for record in stack.logs(service)
        if str(record.get("message", "")).startswith("dead-lettering event")
        and dt.datetime.fromisoformat(record["time"]) >= since
    ]


@pytest.fixture
def started() -> dt.datetime:
    """When the test started (UTC), to read only its own log lines."""
    return dt.datetime.now(dt.UTC)


async def all_ready(stack: FaultStack) -> None:
    """Every replica of every service answers /ready 200, each check ok."""
    for service, answers in (await stack.readiness()).items():
        for code, body in answers:
            assert code == 200, (service, body)
            assert body["status"] == "ready", (service, body)
            assert set(body["checks"]) == set(DEPENDENCIES[service]), (service, body)
            assert set(body["checks"].values()) == {"ok"}, (service, body)


async def readiness_names(stack: FaultStack, dependency: str) -> None:
    """Every service that uses `dependency` answers /ready 503 naming it; the others 200."""
    for service, answers in (await stack.readiness()).items():
        for code, body in answers:
            if dependency in DEPENDENCIES[service]:
                assert code == 503, (service, body)
                assert body["checks"][dependency] == "down", (service, body)
                assert dependency in body["error"]["message"], (service, body)
                assert body["error"]["code"] == "not_ready", (service, body)
            else:
                assert code == 200, (service, body)


# ---------------------------------------------------------------------- Kafka
PLANS = ("tok_success", "tok_declined", "late")
EXPECTED_STATUS = {"tok_success": "confirmed", "tok_declined": "failed", "late": "refunded"}
EXPECTED_MAILS = {
    "tok_success": ["payment.confirmed"],
    "tok_declined": ["payment.failed"],
    "late": ["payment.confirmed", "refund.completed"],
}
EXPECTED_RESERVATION = {"tok_success": "CONFIRMED", "tok_declined": "RELEASED", "late": "RELEASED"}
STORM_SHOPPERS = 6  # two of each plan
FLOWS_PER_WAVE = 2  # per shopper: 3 waves x 6 shoppers x 2 = 36 flows


async def test_kafka_restarted_during_a_payment_storm_loses_no_event(
    stack: FaultStack,
    shoppers: Shoppers,
    admin: Shopper,
    books: Books,
    started: dt.datetime,
    tried: Tried,
) -> None:
    price = "4.00"
    product = await shoppers.product(admin, stock=60, price=price)
    crowd = await shoppers.many(STORM_SHOPPERS)
    plan_of = {s.id: PLANS[i % len(PLANS)] for i, s in enumerate(crowd)}
    flows: dict[str, Shopper] = {}  # reservation id -> its shopper
    answers: list[tuple[str, int, bool]] = []  # (what, status, while Kafka was down)

    async def flow(shopper: Shopper) -> None:
        plan = plan_of[shopper.id]
        held = await shopper.reserve(product["id"])
        answers.append(("reserve", held.status_code, not stack.kafka.running))
        assert held.status_code == 201, held.text
        reservation_id = held.json()["reservationId"]
        flows[reservation_id] = shopper
        if plan == "late":  # cancelled first: the payment comes too late, it is refunded
            cancel = await shopper.cancel(reservation_id)
            answers.append(("cancel", cancel.status_code, not stack.kafka.running))
            assert cancel.status_code == 200, cancel.text
        method = "tok_success" if plan == "late" else plan
        paid = await shopper.pay(reservation_id, price, method)
        answers.append(("pay", paid.status_code, not stack.kafka.running))
        assert paid.status_code == 202, paid.text

    def wave() -> list[Any]:
        return [flow(s) for s in crowd for _ in range(FLOWS_PER_WAVE)]

    # A wave pays, the next pays while Kafka goes down, the last while it is down.
    await asyncio.gather(*wave())
    stopping = asyncio.create_task(asyncio.to_thread(stack.kafka.stop))
    await asyncio.gather(*wave())
    await stopping
    await asyncio.gather(*wave())
    await settled(lambda: readiness_names(stack, "kafka"), "/ready to name kafka", 15)
    flows_per_wave = STORM_SHOPPERS * FLOWS_PER_WAVE
    assert len(flows) == 3 * flows_per_wave
    assert sum(1 for what, _, down in answers if down and what == "pay") >= flows_per_wave
    assert all(status in (200, 201, 202) for _, status, _ in answers), answers

    await start_in_thread(stack.kafka)  # same port, same data
    back = time.monotonic()
    await settled(lambda: all_ready(stack), "every service to be ready again", 30)

    async def payments() -> dict[str, dict[str, Any]]:
        found = {}
        for rid, shopper in flows.items():
            answer = await shopper.payment(rid)
            assert answer.status_code == 200, answer.text
            found[rid] = answer.json()
        return found

    async def all_settled() -> dict[str, dict[str, Any]] | None:
        found = await payments()
        pending = [
            p
            for p in found.values()
            if p["status"] == "processing" or any(r["status"] != "completed" for r in p["refunds"])
        ]
        return None if pending else found

    async def assert_outcomes(found: dict[str, dict[str, Any]]) -> None:
        for rid, shopper in flows.items():
            plan, payment = plan_of[shopper.id], found[rid]
            assert payment["status"] == EXPECTED_STATUS[plan], (plan, payment)
            if plan == "late":
                [refund] = payment["refunds"]  # exactly one
                assert refund["reason"] == "RESERVATION_CANCELLED", refund
                assert float(refund["amount"]) == float(price)
            else:
                assert payment["refunds"] == [], payment
            state = await shopper.reservation(rid)
            assert state.json()["status"] == EXPECTED_RESERVATION[plan], (plan, state.json())

    await assert_outcomes(await eventually(all_settled, "every payment to settle", within=120))
    settle_seconds = time.monotonic() - back
    per_shopper = {
        s.id: sorted(["user.created"] + EXPECTED_MAILS[plan_of[s.id]] * 3 * FLOWS_PER_WAVE)
        for s in crowd
    }

    def all_mailed() -> None:
        sent = mails(stack)
        for shopper in crowd:
            got = mails_to(sent, shopper.email)
            assert got == per_shopper[shopper.id], (shopper.email, got)

    await settled(_sync(all_mailed), "every mail, once", 60)
    await quiet(stack)
    all_mailed()  # nothing was in flight any more: no duplicate came after
    await assert_outcomes(await payments())
    assert dead_letters(stack, started) == []
    sold = sum(1 for shopper in flows.values() if plan_of[shopper.id] == "tok_success")
    final = await books.conserved(product["sku"])
    assert (final.redis.available, final.redis.held, final.redis.sold) == (60 - sold, 0, sold)
    assert await stock_of(admin, product["id"]) == 60 - sold
    tried(
        "fault survived",
        f"Kafka stopped and restarted during a storm of {len(flows)} reserve+pay flows: "
        f"every payment settled as its token says ({settle_seconds:.0f}s after Kafka returned), "
        "each late one refunded once, every mail sent once, the outbox drained; "
        "/ready named kafka while it was down",
    )


def _sync(check: Any) -> Any:
    async def run() -> None:
        check()

    return run


# ------------------------------------------------------------- Redis flushed
SHORT_TTL = 10


async def test_redis_flushed_with_holds_outstanding_is_restored_from_the_ledger(
    stack: FaultStack, shoppers: Shoppers, admin: Shopper, books: Books, tried: Tried
) -> None:
    product = await shoppers.product(admin, stock=20)
    sku = product["sku"]
    shopper = await shoppers.sign_in()
    held = {}
    for quantity in (1, 2, 3):
        answer = await shopper.reserve(product["id"], quantity)
        assert answer.status_code == 201, answer.text
        held[answer.json()["reservationId"]] = answer.json()["expiresAt"]
    # A hold due in a few seconds (commercekit itself, on the stack's servers).
    short = await books.durable().reserve([(sku, 4)], ttl=SHORT_TTL, owner=shopper.id)
    before = await books.conserved(sku)
    assert before.redis.available == 20 - 10

    assert await books.redis.flushall() is True
    # Right away, from several clients at once: each replica meets the empty Redis.
    seen = await asyncio.gather(*(stock_of(shopper, product["id"]) for _ in range(8)))
    assert seen == [10] * 8, "the first calls after the flush restore Redis from the ledger"
    for rid, expires_at in held.items():
        state = (await shopper.reservation(rid)).json()
        assert (state["status"], state["expiresAt"]) == ("PENDING", expires_at), state
    after = await books.conserved(sku, within=5)
    assert set(after.redis_pending) == set(before.redis_pending) == {*held, short.id}
    for rid, hold in before.redis_pending.items():
        assert after.redis_pending[rid].expires_at == hold.expires_at, rid

    # The restored holds behave: a cancel gives its units back once, the short one expires.
    first = next(iter(held))
    assert (await shopper.cancel(first)).status_code == 200
    assert (await shopper.cancel(first)).status_code == 409
    assert await stock_of(shopper, product["id"]) == 11

    async def short_expired() -> bool:
        status = await books.statuses([short.id])
        return status[short.id] == ("EXPIRED", "EXPIRED")

    await eventually(short_expired, "the restored short hold to expire", within=SHORT_TTL + 20)
    expired = await books.ledger.get(short.id)
    assert expired is not None
    assert expired.expires_at == short.expires_at
    assert expired.updated_at >= short.expires_at, "it expired at its deadline, not before"
    final = await books.conserved(sku)
    assert (final.redis.available, final.redis.held) == (15, 5)
    tried(
        "fault survived",
        "Redis FLUSHALL with holds outstanding: restored from the ledger by the next call, "
        "holds kept with their deadlines, stock conserved",
    )


# ----------------------------------------------------------------- PostgreSQL
async def test_postgres_stopped_during_reserves_answers_503_quickly_and_recovers(
    stack: FaultStack, shoppers: Shoppers, admin: Shopper, books: Books, tried: Tried
) -> None:
    product = await shoppers.product(admin, stock=100_000, price="1.00")
    sku = product["sku"]
    crowd = await shoppers.many(3)
    answers: list[Answer] = []
    stop = asyncio.Event()

    async def storm(shopper: Shopper) -> None:
        while not stop.is_set():
            down_before = not stack.postgres.running
            began = time.monotonic()
            response = await shopper.reserve(product["id"])
            took = time.monotonic() - began
            during = down_before and not stack.postgres.running  # down all along
            answers.append(Answer(response.status_code, _json(response), took, during))

    storms = [asyncio.create_task(storm(s)) for s in crowd for _ in range(3)]
    try:
        await eventually(_count(answers, 201, 30), "reserves before the outage")
        await asyncio.to_thread(stack.postgres.stop)
        await eventually(_count(answers, 503, 30, during=True), "503s during the outage")
        await settled(lambda: readiness_names(stack, "postgres"), "/ready to name postgres", 10)
        stack.postgres.start()
        since = len(answers)

        async def serving_again() -> bool:
            return sum(1 for a in answers[since:] if a.status == 201) >= 30

        await eventually(serving_again, "reserves to succeed again", within=30)
    finally:
        stop.set()
        await asyncio.gather(*storms)

    for answer in answers:
        assert answer.status in (201, 503), (answer.status, answer.body)
        assert answer.seconds < QUICK, f"an answer took {answer.seconds:.1f}s"
        if answer.status == 503:
            assert_unavailable(answer, "reserve while PostgreSQL was down")
    for answer in answers:
        if answer.during:
            assert answer.status == 503, answer.body
    made = {a.body["reservationId"] for a in answers if a.status == 201}
    final = await books.conserved(sku)
    assert set(final.redis_pending) == made, "no hold without its 201, no 201 without its hold"
    assert set(final.ledger_pending) == made
    recorded = await books.ledger_ids(sku)
    assert {rid for rid, status in recorded.items() if status == "PENDING"} == made
    assert final.redis.held == len(made)
    assert final.redis.available == 100_000 - len(made)
    worst = max(a.seconds for a in answers)
    unavailable = sum(1 for a in answers if a.status == 503)
    tried(
        "fault survived",
        f"PostgreSQL stopped during {len(answers)} reserves: {unavailable} answered 503 "
        f"(slowest answer {worst:.2f}s), no half-made reservation, no leaked hold; "
        "it served again when PostgreSQL returned",
    )


def _count(answers: list[Answer], status: int, at_least: int, *, during: bool = False) -> Any:
    async def check() -> bool:
        found = sum(1 for a in answers if a.status == status and (a.during or not during))
        return found >= at_least

    return check


# ------------------------------------------------------------ killed processes
async def retried(call: Any, what: str) -> httpx.Response:
    """Send `call()` until it is not a 502/503/504 (the same Idempotency-Key each time)."""
    for _ in range(50):
        try:
            response: httpx.Response = await call()
        except httpx.TransportError:
            await asyncio.sleep(0.2)
            continue
        if response.status_code not in (502, 503, 504):
            return response
        await asyncio.sleep(0.2)
    pytest.fail(f"{what} kept failing")


async def test_an_inventory_replica_killed_mid_flow(
    stack: FaultStack,
    shoppers: Shoppers,
    admin: Shopper,
    books: Books,
    started: dt.datetime,
    tried: Tried,
) -> None:
    price = "2.00"
    product = await shoppers.product(admin, stock=1_000, price=price)
    crowd = await shoppers.many(6)
    victim = stack.processes("inventory")[0]
    port = victim.port
    done = asyncio.Event()
    paid: list[tuple[Shopper, str]] = []
    statuses: list[int] = []

    async def shop(shopper: Shopper) -> None:
        while not done.is_set():
            key = f"k-{uuid.uuid4().hex}"

            async def reserve(key: str = key) -> httpx.Response:
                response = await shopper.reserve(product["id"], key=key)
                statuses.append(response.status_code)
                return response

            held = await retried(reserve, "a reserve")
            assert held.status_code == 201, held.text
            rid = held.json()["reservationId"]
            answer = await retried(lambda rid=rid: shopper.pay(rid, price), "a payment")
            assert answer.status_code == 202, answer.text
            paid.append((shopper, rid))

    async def flows(at_least: int) -> bool:
        return len(paid) >= at_least

    loops = [asyncio.create_task(shop(s)) for s in crowd]
    try:
        await eventually(lambda: flows(20), "flows before the crash")
        victim.kill()  # SIGKILL, requests in flight
        crashed_at = len(paid)
        await eventually(lambda: flows(crashed_at + 20), "flows through the other replica")
        victim.start()
        assert victim.port == port

        async def serves_again() -> bool:
            values = await stack.metric(
                "inventory", 'refapp_inventory_reservations_total{outcome="held"}', missing=0
            )
            return values[0] > 0  # the restarted replica's counter starts at 0

        await eventually(serves_again, "the gateway to use the restarted replica", within=30)
    finally:
        done.set()
        results = await asyncio.gather(*loops, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []

    paid_by = {rid: shopper for shopper, rid in paid}
    ids = set(paid_by)
    assert len(ids) == len(paid), "one reservation per Idempotency-Key, retries included"

    waiting = dict(paid_by)

    outcomes: dict[str, dict[str, Any]] = {}

    async def all_settled() -> bool:
        for rid, shopper in list(waiting.items()):
            payment = (await shopper.payment(rid)).json()
            if payment["status"] == "processing":
                return False
            outcomes[rid] = payment
            del waiting[rid]
        return True

    await eventually(all_settled, "every payment to settle", within=120)
    for payment in outcomes.values():
        assert (payment["status"], payment["refunds"]) == ("confirmed", []), payment
    recorded = await books.ledger_ids(product["sku"])
    assert recorded == dict.fromkeys(ids, "CONFIRMED"), "no stray hold, no unsettled one"
    final = await books.conserved(product["sku"])
    assert (final.redis.available, final.redis.held, final.redis.sold) == (
        1_000 - len(ids),
        0,
        len(ids),
    )
    assert dead_letters(stack, started) == []
    lost = sum(1 for status in statuses if status in (502, 503, 504))
    tried(
        "fault survived",
        f"an inventory replica SIGKILLed during {len(paid)} reserve+pay flows "
        f"({lost} answers lost in the crash, retried with their keys) and restarted: "
        "one reservation per key, every payment confirmed once, stock conserved",
    )


HOLD_TTL = 3
HOLDS = 600


async def test_the_sweepers_killed_mid_batch_expire_every_hold_once_after_restart(
    stack: FaultStack, shoppers: Shoppers, admin: Shopper, books: Books, tried: Tried
) -> None:
    product = await shoppers.product(admin, stock=HOLDS)
    sku = product["sku"]
    workers = stack.processes("worker")
    durable = books.durable()
    # The sweepers are paused while the holds are made, so that all are due at once.
    for worker in workers:
        pause(worker)
    try:
        holds = await asyncio.gather(
            *(durable.reserve([(sku, 1)], ttl=HOLD_TTL, owner="sweeper") for _ in range(HOLDS))
        )
        ids = [h.id for h in holds]
        first = min(holds, key=lambda h: h.expires_at)
        last = max(holds, key=lambda h: h.expires_at)

        async def all_due() -> bool:
            return dt.datetime.now(dt.UTC) > last.expires_at

        await eventually(all_due, "every hold to be due", within=HOLD_TTL + 30)
        assert (await books.of(sku)).redis.held == HOLDS
    finally:
        for worker in workers:
            resume(worker)

    async def sweep_started() -> bool:
        return (await books.store.get(first.id)).status.value == "EXPIRED"

    await eventually(sweep_started, "the sweep to start", within=30, every=0.002)
    for worker in workers:
        worker.kill()
    at_kill = await books.statuses(ids)
    in_redis = sum(1 for r, _ in at_kill.values() if r == "EXPIRED")
    in_ledger = sum(1 for _, led in at_kill.values() if led == "EXPIRED")
    assert 0 < in_redis < HOLDS, "the sweepers died with holds left to expire"
    assert in_ledger < in_redis, "the sweepers died between Redis and the ledger (mid-batch)"

    for worker in workers:
        worker.start()

    async def all_expired() -> bool:
        statuses = await books.statuses(ids)
        return all(s == ("EXPIRED", "EXPIRED") for s in statuses.values())

    await eventually(all_expired, "every hold to expire, in Redis and the ledger")
    final = await books.conserved(sku)
    assert (final.redis.available, final.redis.held, final.redis.sold) == (HOLDS, 0, 0)
    wanted = set(ids)
    reported = [
        str(r["reservation_id"])
        for r in stack.logs("worker")
        if r.get("message") == "reservation expired" and r.get("reservation_id") in wanted
    ]
    assert duplicates(reported) == {}, "a hold was reported expired twice"
    tried(
        "fault survived",
        f"both sweepers SIGKILLed mid-batch ({in_redis} of {HOLDS} due holds expired in Redis, "
        f"{in_ledger} of them recorded) and restarted: every hold expired once, "
        "its stock back once",
    )


def pause(process: UvicornServer) -> None:
    """Freeze a process (SIGSTOP), as a stalled VM would."""
    assert process.pid is not None
    os.killpg(process.pid, signal.SIGSTOP)


def resume(process: UvicornServer) -> None:
    """Let a paused process run again (SIGCONT)."""
    if process.pid is not None:
        os.killpg(process.pid, signal.SIGCONT)


# ---------------------------------------------------------------- readiness
@pytest.mark.parametrize("dependency", ["postgres", "redis"])  # Kafka: in the storm test
async def test_ready_names_the_missing_dependency(
    stack: FaultStack, dependency: str, tried: Tried
) -> None:
    server = {"redis": stack.redis, "postgres": stack.postgres}[dependency]
    await asyncio.to_thread(server.stop)
    try:
        await settled(
            lambda: readiness_names(stack, dependency), f"/ready to name {dependency}", 15
        )
    finally:
        server.start()

    await settled(lambda: all_ready(stack), "every service to be ready again", 30)
    tried("fault survived", f"{dependency} missing: /ready answered 503 naming it, then 200")


# ----------------------------------------------------------- Redis restarted
# These run last: after a Redis restart the services' Redis clients keep dead
# pooled connections that fail once each, later (see the last test), which
# would break the tests that follow with errors that are not theirs.
REDIS_OUTAGE_SECONDS = 5.0
"""How long Redis stays down once a payment's settlement has met the outage."""


async def served(call: Any) -> tuple[httpx.Response, int]:
    """Send `call()` again while it answers 503 (as a client honouring Retry-After would)."""
    for refused in range(40):
        response: httpx.Response = await call()
        if response.status_code != 503:
            return response, refused
        await asyncio.sleep(0.25)
    pytest.fail(f"still 503 after 40 tries: {response.text}")


async def test_redis_restarted_empty_answers_503_then_recovers_by_itself(
    stack: FaultStack, shoppers: Shoppers, admin: Shopper, books: Books, tried: Tried
) -> None:
    product = await shoppers.product(admin, stock=12, price="3.00")
    sku = product["sku"]
    shopper = await shoppers.sign_in()
    held = {}
    for quantity in (2, 3):
        answer, _ = await served(lambda quantity=quantity: shopper.reserve(product["id"], quantity))
        assert answer.status_code == 201, answer.text
        held[answer.json()["reservationId"]] = answer.json()["expiresAt"]
    to_keep, to_cancel = list(held)
    await books.conserved(sku)

    await asyncio.to_thread(stack.redis.stop)
    try:
        calls = {
            "product list": shopper.get("/api/v1/products"),
            "product": shopper.get(f"/api/v1/products/{product['id']}"),
            "reserve": shopper.reserve(product["id"]),
            "reservation": shopper.reservation(to_cancel),
            "cancel": shopper.cancel(to_cancel),
        }
        for what, call in calls.items():
            response, seconds = await timed(call)
            assert_unavailable(Answer(response.status_code, _json(response), seconds, True), what)
        await settled(lambda: readiness_names(stack, "redis"), "/ready to name redis", 10)
    finally:
        stack.redis.start()  # same port, empty: persistence is off

    refused = 0
    answer, n = await served(lambda: shopper.get(f"/api/v1/products/{product['id']}"))
    refused += n
    assert answer.json()["stock"] == 12 - 5, "the stock, restored from the ledger"
    for rid, expires_at in held.items():
        answer, n = await served(lambda rid=rid: shopper.reservation(rid))
        refused += n
        state = answer.json()
        assert (state["status"], state["expiresAt"]) == ("PENDING", expires_at), state
    cancel, n = await served(lambda: shopper.cancel(to_cancel))
    refused += n
    assert cancel.status_code == 200, cancel.text
    again, n = await served(lambda: shopper.reserve(product["id"], 7))
    refused += n
    assert again.status_code == 201, again.text
    final = await books.conserved(sku)
    assert set(final.redis_pending) == {to_keep, again.json()["reservationId"]}
    assert (final.redis.available, final.redis.held, final.redis.sold) == (3, 9, 0)
    tried(
        "fault survived",
        "Redis stopped (503 JSON answers within seconds, /ready names redis) and restarted "
        "empty: stock and holds restored from the ledger with their deadlines, no help needed "
        f"({refused} answers 503 once it was back, see the stale-connection bug)",
    )


async def test_a_payment_settling_during_a_redis_outage_is_not_lost(
    stack: FaultStack,
    shoppers: Shoppers,
    admin: Shopper,
    books: Books,
    started: dt.datetime,
    tried: Tried,
) -> None:
    product = await shoppers.product(admin, stock=3, price="3.00")
    shopper = await shoppers.sign_in()
    held, _ = await served(lambda: shopper.reserve(product["id"], 2))
    assert held.status_code == 201, held.text
    rid = held.json()["reservationId"]

    # The payment service pins the hold in Redis as it takes the payment; the inventory
    # replicas are frozen meanwhile, so that its settlement meets the outage.
    inventory = stack.processes("inventory")
    for process in inventory:
        pause(process)
    try:
        paid = await shopper.pay(rid, "6.00")
        assert paid.status_code == 202, paid.text
        await asyncio.to_thread(stack.redis.stop)
    finally:
        for process in inventory:
            resume(process)
    try:

        async def settlement_tried() -> bool:  # and met the outage: it logs a retry
            return any(
                "(payment.confirmed)" in str(r.get("message"))
                and dt.datetime.fromisoformat(r["time"]) >= started
                for r in stack.logs("inventory")
            )

        await eventually(settlement_tried, "the settlement to meet the outage")
        await asyncio.sleep(REDIS_OUTAGE_SECONDS)  # the fault: Redis stays down a while
    finally:
        stack.redis.start()

    deadline = time.monotonic() + 12
    status = None
    while time.monotonic() < deadline and status != "CONFIRMED":
        status = (await shopper.reservation(rid)).json().get("status")
        await asyncio.sleep(0.25)
    lost = dead_letters(stack, started)
    assert status == "CONFIRMED", f"the payment never settled its reservation: {lost}"
    assert lost == []
    payment = (await shopper.payment(rid)).json()
    assert (payment["status"], payment["refunds"]) == ("confirmed", []), payment
    final = await books.conserved(product["sku"])
    assert (final.redis.available, final.redis.held, final.redis.sold) == (1, 0, 2)
    tried(
        "fault survived",
        f"a payment settled during a {REDIS_OUTAGE_SECONDS:.0f}s Redis outage: "
        "confirmed once Redis returned, no event dead-lettered",
    )


async def test_once_redis_is_back_no_request_fails_on_a_dead_connection(
    stack: FaultStack, shoppers: Shoppers, admin: Shopper, tried: Tried
) -> None:
    product = await shoppers.product(admin, stock=10)
    path = f"/api/v1/products/{product['id']}"
    replicas = stack.app.urls("inventory")
    async with httpx.AsyncClient(timeout=10) as http:
        for url in replicas:  # each replica reads Redis, so it keeps a pooled connection
            answer, _ = await served(lambda url=url: http.get(url + path))
            assert answer.status_code == 200, answer.text
        await asyncio.to_thread(stack.redis.stop)
        stack.redis.start()  # it answers PING again
        first = {url: (await http.get(url + path)).status_code for url in replicas}
    assert first == dict.fromkeys(replicas, 200), f"first answers once Redis was back: {first}"
    tried("fault survived", "Redis restarted: no request failed on a connection from before")
