"""One order, one trace: the client's traceparent through the gateway, the services, Kafka.

The shopper reserves and pays with one trace id of its own; the payment's
outcome event (written to the outbox, relayed to Kafka, consumed by the
worker and the email service) carries it, and so do the log lines of every
process that handled the order.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from reference_app.launch import LocalStack
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from commercekit.testing.servers import PostgresServer
from commercekit.tracing import TraceContext, new_span_id, new_trace_id
from tests.e2e.conftest import SHARED_ADMIN_EMAIL
from tests.e2e.gateway import gateway_client

PASSWORD = "correct horse battery staple"
SETTLE_WITHIN = 45.0


def _token(http: httpx.Client, email: str, *, tolerate_taken: bool = False) -> str:
    name = f"t{uuid.uuid4().hex[:12]}"
    signup = http.post(
        "/api/v1/auth/signup", json={"username": name, "email": email, "password": PASSWORD}
    )
    assert signup.status_code == 201 or (tolerate_taken and signup.status_code == 409), signup.text
    login = http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    token: str = login.json()["accessToken"]
    return token


def _eventually(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + SETTLE_WITHIN
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _log_lines(stack: LocalStack, service: str) -> list[dict[str, Any]]:
    found = []
    for process in stack.processes[service]:
        for line in process.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                found.append(json.loads(line))
    return found


async def _outbox_rows(postgres_server: PostgresServer, trace_id: str) -> list[dict[str, Any]]:
    engine = create_async_engine(
        postgres_server.url.replace("postgresql://", "postgresql+asyncpg://", 1)
    )
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT event_type, key, body, sent_at FROM commercekit_outbox"
                    " WHERE trace_id = :trace ORDER BY id"
                ),
                {"trace": trace_id},
            )
            return [dict(row._mapping) for row in rows]
    finally:
        await engine.dispose()


def test_one_trace_id_from_the_clients_traceparent_to_the_payment_events_consumers(
    stack: LocalStack, postgres_server: PostgresServer
) -> None:
    trace_id = new_trace_id()

    def traced(token: str) -> dict[str, str]:
        # Each call is a new span of the client's one trace.
        return {
            "Authorization": f"Bearer {token}",
            "traceparent": f"00-{trace_id}-{new_span_id()}-01",
        }

    with gateway_client(stack, timeout=10) as http:
        admin = _token(http, SHARED_ADMIN_EMAIL, tolerate_taken=True)
        email = f"t{uuid.uuid4().hex[:12]}@example.com"
        shopper = _token(http, email)
        sku = f"TRACE-{uuid.uuid4().hex[:10]}"
        product = http.post(
            "/api/v1/inventory",
            json={"sku": sku, "name": "Lamp", "price": "12.50", "stock": 3},
            headers={"Authorization": f"Bearer {admin}"},
        )
        assert product.status_code == 201, product.text

        held = http.post(
            "/api/v1/inventory/reserve",
            json={"productId": product.json()["id"], "quantity": 1},
            headers=traced(shopper),
        )
        assert held.status_code == 201, held.text
        reservation_id = held.json()["reservationId"]
        paying = http.post(
            "/api/v1/payment",
            json={
                "reservationId": reservation_id,
                "amount": "12.50",
                "paymentMethod": "tok_success",
            },
            headers=traced(shopper),
        )
        assert paying.status_code == 202, paying.text
        for answer in (held, paying):  # the service's span, in the client's trace
            assert TraceContext.parse(answer.headers["traceparent"]).trace_id == trace_id

        def confirmed() -> bool:
            answer = http.get(f"/api/v1/payment/{reservation_id}", headers=traced(shopper))
            return answer.status_code == 200 and answer.json()["status"] == "confirmed"

        _eventually(confirmed, "the payment's confirmation")
        reservation = http.get(
            f"/api/v1/inventory/reservations/{reservation_id}", headers=traced(shopper)
        )
        assert reservation.json()["status"] == "CONFIRMED"

    # The outbox: the payment's outcome event, in the client's trace, relayed.
    rows = asyncio.run(_outbox_rows(postgres_server, trace_id))
    outcome = [r for r in rows if r["event_type"].startswith("payment.")]
    assert [r["event_type"] for r in outcome] == ["payment.confirmed"], rows
    (row,) = outcome
    assert row["key"] == reservation_id
    body = json.loads(row["body"])
    assert TraceContext.parse(body["traceparent"]).trace_id == trace_id
    assert row["sent_at"] is not None

    # Out of Kafka: the email service sent the receipt inside the event's trace.
    def receipt() -> list[dict[str, Any]]:
        return [
            line
            for line in _log_lines(stack, "email")
            if line.get("message") == "email sent"
            and line.get("type") == "payment.confirmed"
            and email in str(line.get("to"))
        ]

    (sent,) = _eventually(receipt, "the payment receipt")
    assert sent["trace_id"] == trace_id
    assert sent["event_id"] == body["id"]

    # Over HTTP: the services' access lines and the gateway's log name the trace.
    served = {
        (line["method"], line["route"])
        for service in ("inventory", "payment")
        for line in _log_lines(stack, service)
        if line.get("trace_id") == trace_id and line.get("logger") == "reference_app.access"
    }
    assert ("POST", "/api/v1/inventory/reserve") in served
    assert ("POST", "/api/v1/payment") in served
    assert stack.gateway is not None
    gateway_lines = [
        json.loads(line)
        for line in stack.gateway.log_path.read_text(errors="replace").splitlines()
        if re.match(r"^\{.*\"service\":\"gateway\"", line)
    ]
    assert sum(1 for line in gateway_lines if line["trace_id"] == trace_id) >= 4
