"""The gateway's config in front of a stub service: what nginx makes of each answer it gets.

The stub plays all three services; its answers are set per test, so the
cases the real services rarely give (a verify that fails with a 5xx, a
service that sets its own Cache-Control) are proven too.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from reference_app.launch import GATEWAY_CONFIG

from commercekit.testing.servers import NginxServer

# path -> (status, headers) the stub answers; the verify is GET /api/v1/auth/verify.
Answers = dict[str, tuple[int, dict[str, str]]]


class Stub(ThreadingHTTPServer):
    answers: Answers
    seen: list[dict[str, str]]


class _Handler(BaseHTTPRequestHandler):
    server: Stub

    def _answer(self) -> None:
        self.server.seen.append({"path": self.path, **dict(self.headers.items())})
        status, headers = self.server.answers.get(self.path.split("?")[0], (404, {}))
        body = json.dumps({"path": self.path}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer  # noqa: N815

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[Stub]:
    server = Stub(("127.0.0.1", 0), _Handler)
    server.answers, server.seen = {}, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def nginx(tmp_path: Path, stub: Stub) -> Iterator[NginxServer]:
    reason = NginxServer.missing()
    if reason is not None:
        pytest.skip(reason)
    address = f"127.0.0.1:{stub.server_address[1]}"
    (tmp_path / "cache").mkdir()
    variables = {
        "USER_SERVICE": address,
        "INVENTORY_SERVICE": address,
        "PAYMENT_SERVICE": address,
        "AUTH_CACHE_DIR": str(tmp_path / "cache"),
    }
    with NginxServer(tmp_path / "nginx", GATEWAY_CONFIG, variables=variables) as server:
        yield server


@pytest.fixture
def gateway(nginx: NginxServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=nginx.url, timeout=15) as client:
        yield client


VERIFY = "/api/v1/auth/verify"
OK = (200, {"X-User-Id": "u-1", "X-User-Role": "user", "X-Accel-Expires": "0"})


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_verify_that_fails_with_a_5xx_is_a_503_with_retry_after(
    gateway: httpx.Client, stub: Stub, status: int
) -> None:
    stub.answers[VERIFY] = (status, {})
    stub.answers["/api/v1/inventory/reserve"] = (201, {})
    answer = gateway.post("/api/v1/inventory/reserve", headers={"Authorization": "Bearer t"})
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "auth_unavailable"
    assert answer.headers["retry-after"] == "1"
    assert [s["path"] for s in stub.seen] == [VERIFY]  # the service was not called


def test_refusals_of_the_verify_stay_401_and_403(gateway: httpx.Client, stub: Stub) -> None:
    for status in (401, 403):
        stub.answers[VERIFY] = (status, {})
        answer = gateway.get("/api/v1/payment/r", headers={"Authorization": f"Bearer t{status}"})
        assert answer.status_code == status, answer.text
        assert "retry-after" not in answer.headers


def test_a_services_own_answers_pass_through_and_its_cache_control_is_kept(
    gateway: httpx.Client, stub: Stub
) -> None:
    stub.answers[VERIFY] = OK
    stub.answers["/api/v1/products"] = (200, {"Cache-Control": "public, max-age=5"})
    stub.answers["/api/v1/payment/r"] = (503, {"Retry-After": "7"})
    products = gateway.get("/api/v1/products")
    assert products.headers.get_list("cache-control") == ["public, max-age=5"]
    assert products.headers["x-content-type-options"] == "nosniff"
    own = gateway.get("/api/v1/payment/r", headers={"Authorization": "Bearer t"})
    assert own.status_code == 503
    assert own.headers.get_list("retry-after") == ["7"]  # the service's, not doubled
    assert own.headers["cache-control"] == "no-store"


def test_the_services_get_the_upstreams_name_as_host(gateway: httpx.Client, stub: Stub) -> None:
    stub.answers[VERIFY] = OK
    stub.answers["/api/v1/inventory/reserve"] = (201, {})
    gateway.post(
        "/api/v1/inventory/reserve",
        headers={"Host": "evil.example", "Authorization": "Bearer t", "X-Forwarded-Host": "x"},
    )
    hosts = {s["path"]: s.get("Host") for s in stub.seen}
    assert hosts == {VERIFY: "refapp_user", "/api/v1/inventory/reserve": "refapp_inventory"}
    assert all("X-Forwarded-Host" not in s for s in stub.seen)


def test_a_service_redirect_is_made_relative(gateway: httpx.Client, stub: Stub) -> None:
    # The services never redirect; if one did, its Location would not name a client's host.
    stub.answers["/api/v1/products/"] = (307, {"Location": "http://refapp_inventory/api/v1/x"})
    answer = gateway.get("/api/v1/products/", headers={"Host": "evil.example"})
    assert answer.headers["location"] == "/api/v1/x"


# ---------------------------------------------------------------- W3C Trace Context

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_TRACEPARENT = f"00-{CLIENT_TRACE}-00f067aa0ba902b7-01"
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-01$")


def test_a_valid_traceparent_and_its_tracestate_reach_the_service_and_the_token_check(
    gateway: httpx.Client, stub: Stub
) -> None:
    stub.answers[VERIFY] = OK
    stub.answers["/api/v1/inventory/reserve"] = (201, {})
    answer = gateway.post(
        "/api/v1/inventory/reserve",
        headers={
            "Authorization": "Bearer t",
            "traceparent": CLIENT_TRACEPARENT,
            "tracestate": "shop=checkout,rojo=00f067aa0ba902b7",
            "X-User-Id": "someone-else",
        },
    )
    assert answer.status_code == 201, answer.text
    assert [s["path"] for s in stub.seen] == [VERIFY, "/api/v1/inventory/reserve"]
    for seen in stub.seen:
        assert seen["traceparent"] == CLIENT_TRACEPARENT
        assert seen["tracestate"] == "shop=checkout,rojo=00f067aa0ba902b7"
    assert stub.seen[1]["X-User-Id"] == "u-1"  # still the token check's, never the client's


@pytest.mark.parametrize(
    "traceparent",
    [
        f"00-{CLIENT_TRACE.upper()}-00f067aa0ba902b7-01",  # upper-case hex
        f"01-{CLIENT_TRACE}-00f067aa0ba902b7-01",  # a version it does not speak
        f"ff-{CLIENT_TRACE}-00f067aa0ba902b7-01",
        f"00-{'0' * 32}-00f067aa0ba902b7-01",  # all-zero trace id
        f"00-{CLIENT_TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"00-{CLIENT_TRACE[:31]}-00f067aa0ba902b7-01",
        f"00-{CLIENT_TRACE}-00f067aa0ba902b7-01-extra",
        "00-zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-00f067aa0ba902b7-01",
        "<script>",
    ],
)
def test_an_invalid_traceparent_is_replaced_by_a_new_trace_from_the_request_id(
    gateway: httpx.Client, stub: Stub, traceparent: str
) -> None:
    stub.answers["/api/v1/products"] = (200, {})
    answer = gateway.get(
        "/api/v1/products", headers={"traceparent": traceparent, "tracestate": "shop=1"}
    )
    assert answer.status_code == 200
    (seen,) = stub.seen
    match = TRACEPARENT.match(seen["traceparent"])
    assert match is not None, seen["traceparent"]
    request_id = answer.headers["x-request-id"]
    assert match.groups() == (request_id, request_id[16:])
    assert match.group(1) not in traceparent
    assert "tracestate" not in seen  # it belonged to the refused traceparent


def test_without_a_traceparent_each_request_starts_its_own_trace(
    nginx: NginxServer, gateway: httpx.Client, stub: Stub
) -> None:
    stub.answers["/api/v1/products"] = (200, {})
    answers = [gateway.get("/api/v1/products") for _ in range(3)]
    traces = [TRACEPARENT.match(s["traceparent"]) for s in stub.seen]
    assert all(traces)
    trace_ids = [t.group(1) for t in traces if t is not None]
    assert trace_ids == [a.headers["x-request-id"] for a in answers]
    assert len(set(trace_ids)) == 3
    gateway.get("/api/v1/products", headers={"traceparent": CLIENT_TRACEPARENT})
    logged = [
        json.loads(line) for line in nginx.log_path.read_text().splitlines() if line.startswith("{")
    ]
    assert [entry["trace_id"] for entry in logged[-4:]] == [*trace_ids, CLIENT_TRACE]


def test_the_gateways_own_answers_keep_their_json_bodies_with_a_traceparent(
    gateway: httpx.Client, stub: Stub
) -> None:
    answer = gateway.get("/nowhere", headers={"traceparent": CLIENT_TRACEPARENT})
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"
    stub.answers[VERIFY] = (401, {})
    refused = gateway.post("/api/v1/payment", headers={"traceparent": "garbage"})
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthorized"
