"""The gateway's own answers: client garbage, hostile Host headers, secure headers, outages.

Everything here goes through the real nginx in front of the real services,
most of it over raw sockets (httpx would refuse to send the garbage, or
normalise it first).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from reference_app.launch import SERVICES, LocalStack, ServiceSpec

from tests.e2e.conftest import SHARED_ADMIN_EMAIL
from tests.e2e.gateway import (
    assert_json_error,
    gateway_client,
    loopback_address,
    refresh_cookie,
)
from tests.e2e.reliability.conftest import Tried

PASSWORD = "correct horse battery staple"

SECURE_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "referrer-policy": "no-referrer",
    "cross-origin-resource-policy": "same-origin",
}
"""OWASP's secure headers that fit a JSON API, on every answer the gateway gives."""


# ------------------------------------------------------------------ helpers
@dataclass(frozen=True)
class Raw:
    """One answer read off a socket."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("latin-1")


def raw(stack: LocalStack, data: bytes) -> Raw:
    """Send `data` as is to the gateway and read its one answer (it closes the connection)."""
    gateway = httpx.URL(stack.gateway_url)
    assert gateway.host
    assert gateway.port
    with socket.create_connection((gateway.host, gateway.port), timeout=10) as conn:
        conn.sendall(data)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Raw(int(status_line.split()[1]), headers, body)


def request(method: str, target: str, *, version: str = "HTTP/1.1", extra: str = "") -> bytes:
    """A request, its lines exactly as given."""
    return (
        f"{method} {target} {version}\r\nHost: shop.example\r\n{extra}"
        "Content-Length: 0\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")


def assert_json_4xx(answer: Raw, what: str) -> None:
    """A client error with the shared JSON error body: no 5xx, no HTML page."""
    assert 400 <= answer.status < 500, (what, answer.status, answer.text)
    assert answer.headers.get("content-type", "").startswith("application/json"), (what, answer)
    error = json.loads(answer.body)["error"]
    assert error["code"], (what, error)
    assert error["message"], (what, error)


def assert_secure_headers(headers: httpx.Headers | dict[str, str], what: str) -> None:
    for name, value in SECURE_HEADERS.items():
        assert headers.get(name) == value, (what, name, dict(headers))
    assert headers.get("cache-control") == "no-store", (what, dict(headers))


def sign_in(http: httpx.Client, email: str | None = None) -> tuple[httpx.Response, str]:
    """Sign up (a shared address may exist already) and log in: the login answer and its token."""
    name = f"g{uuid.uuid4().hex[:12]}"
    email = email or f"{name}@example.com"
    signup = http.post(
        "/api/v1/auth/signup", json={"username": name, "email": email, "password": PASSWORD}
    )
    assert signup.status_code in (201, 409), signup.text
    login = http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return login, login.json()["accessToken"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def admin_token(stack: LocalStack) -> str:
    with gateway_client(stack) as http:
        return sign_in(http, SHARED_ADMIN_EMAIL)[1]


@pytest.fixture(scope="module")
def product(stack: LocalStack, admin_token: str) -> dict[str, str]:
    with gateway_client(stack) as http:
        sku = f"GW-{uuid.uuid4().hex[:10]}"
        body = {"sku": sku, "name": "Teapot", "price": "3.00", "stock": 50}
        answer = http.post("/api/v1/inventory", json=body, headers=bearer(admin_token))
        assert answer.status_code == 201, answer.text
        created: dict[str, str] = answer.json()
        return created


# ------------------------------------------------------------------ 11: client garbage
ROUTES = (
    "/api/v1/products",
    "/api/v1/auth/login",
    "/api/v1/auth/me",
    "/api/v1/inventory/reserve",
    "/api/v1/payment",
    "/health",
    "/nowhere",
)
"""One path of each location family of the gateway."""

TLS_CLIENT_HELLO = bytes.fromhex(
    "16030100a5010000a10303" + "ab" * 32 + "000002130101000076000000"
) + bytes(64)


def garbage() -> dict[str, bytes]:
    cases: dict[str, bytes] = {}
    for path in ROUTES:
        for method in ("get", "post", "Delete", "FOO", "PROPFIND", "TRACE", "CONNECT"):
            cases[f"method {method} on {path}"] = request(method, path)
        cases[f"%00 in {path}"] = request("GET", path + "%00")
        cases[f"%00 mid-path in {path}"] = request("POST", path + "/%00/x")
        cases[f"HTTP/9.9 on {path}"] = request("GET", path, version="HTTP/9.9")
        cases[f"HTTP/2.0 text on {path}"] = request("GET", path, version="HTTP/2.0")
        cases[f"Transfer-Encoding gzip on {path}"] = request(
            "POST", path, extra="Transfer-Encoding: gzip\r\n"
        )
    cases["a TLS ClientHello on the plain port"] = TLS_CLIENT_HELLO
    cases["a request line of four words"] = request("GET", "/api/v1/products HTTP/1.1")
    cases["a binary request line"] = b"\x00\xff\xfe\r\n\r\n"
    return cases


def test_client_garbage_gets_a_json_4xx_never_a_5xx(stack: LocalStack, tried: Tried) -> None:
    cases = garbage()
    for what, data in cases.items():
        answer = raw(stack, data)
        assert_json_4xx(answer, what)
        assert_secure_headers(answer.headers, what)
    tried(
        "input rejected",
        f"{len(cases)} kinds of raw-socket garbage (lower-case and unknown methods, %00, "
        "HTTP/9.9, TLS to the plain port, Transfer-Encoding gzip) on every route family: "
        "a JSON 4xx from nginx, never a 5xx or an HTML page",
    )


# ------------------------------------------------------------------ 12: hostile Host
HOSTILE = "evil.example"


def test_no_answer_points_at_a_host_the_client_chose(
    stack: LocalStack, admin_token: str, product: dict[str, str], tried: Tried
) -> None:
    paths = [
        "/api/v1/products/",
        "/api/v1/products",
        f"/api/v1/products/{product['id']}/",
        "/api/v1/auth/login/",
        "/api/v1/auth/signup/",
        "/api/v1/auth/refresh/",
        "/api/v1/auth/me/",
        "/api/v1/inventory/",
        "/api/v1/inventory/reserve/",
        f"/api/v1/inventory/{product['id']}/restock/",
        "/api/v1/payment/",
        "/api/v1/payment/some-id/",
        "/api/v1/other/",
        "/health/",
        "/nowhere/",
    ]
    # (how the request names its host, the target's prefix)
    hosts = {
        "Host": (f"Host: {HOSTILE}", ""),
        "Host with a port": (f"Host: {HOSTILE}:8443", ""),
        "X-Forwarded-Host": (f"Host: shop.example\r\nX-Forwarded-Host: {HOSTILE}", ""),
        "absolute-form target": ("Host: shop.example", f"http://{HOSTILE}"),
    }
    checked = 0
    for path in paths:
        for kind, (host, prefix) in hosts.items():
            for method in ("GET", "POST"):
                data = (
                    f"{method} {prefix}{path} HTTP/1.1\r\n{host}\r\n"
                    f"Authorization: Bearer {admin_token}\r\n"
                    "Content-Length: 0\r\nConnection: close\r\n\r\n"
                ).encode()
                answer = raw(stack, data)
                what = f"{method} {path} with a hostile {kind}"
                assert not 300 <= answer.status < 400, (what, answer.status, answer.headers)
                assert "location" not in answer.headers, (what, answer.headers)
                assert HOSTILE not in answer.text, (what, answer.text)
                assert answer.status < 500, (what, answer.status, answer.text)
                checked += 1
    tried(
        "attack rejected",
        f"a hostile Host / X-Forwarded-Host / absolute URI on {len(paths)} paths of every "
        f"route family ({checked} requests): no redirect, no answer naming that host",
    )


# ------------------------------------------------------------------ 13: secure headers
def test_every_answer_carries_the_secure_headers_and_no_store(
    stack: LocalStack, admin_token: str, product: dict[str, str], tried: Tried
) -> None:
    seen: list[str] = []

    def check(answer: httpx.Response, what: str) -> httpx.Response:
        assert_secure_headers(answer.headers, f"{what}: {answer.status_code}")
        assert answer.headers["x-request-id"]
        seen.append(f"{what} {answer.status_code}")
        return answer

    admin = bearer(admin_token)
    with gateway_client(stack) as http:
        name = f"h{uuid.uuid4().hex[:12]}"
        email = f"{name}@example.com"
        user = {"username": name, "email": email, "password": PASSWORD}
        check(http.post("/api/v1/auth/signup", json=user), "signup")
        check(http.post("/api/v1/auth/signup", json=user), "signup taken")
        login = check(
            http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}), "login"
        )
        check(http.post("/api/v1/auth/login", json={"email": email, "password": "no"}), "login")
        token = login.json()["accessToken"]
        cookie = {"Cookie": f"refreshToken={refresh_cookie(login)}"}
        refreshed = check(http.post("/api/v1/auth/refresh", headers=cookie), "refresh")
        check(http.post("/api/v1/auth/refresh", headers=cookie), "refresh reused")
        check(http.post("/api/v1/auth/refresh"), "refresh without a cookie")
        check(http.get("/api/v1/auth/me", headers=bearer(token)), "me")
        check(http.get("/api/v1/auth/me"), "me without a token")
        check(http.get("/api/v1/auth/verify", headers=bearer(token)), "verify from outside")
        check(http.get("/api/v1/products"), "products")
        check(http.get(f"/api/v1/products/{product['id']}"), "a product")
        check(http.get("/api/v1/products/no-such-id"), "an unknown product")
        check(http.post("/api/v1/products"), "products POST")
        reserve = check(
            http.post(
                "/api/v1/inventory/reserve",
                json={"productId": product["id"], "quantity": 1},
                headers=bearer(token),
            ),
            "reserve",
        )
        reservation = reserve.json()["reservationId"]
        check(
            http.get(f"/api/v1/inventory/reservations/{reservation}", headers=bearer(token)),
            "a reservation",
        )
        check(http.post("/api/v1/inventory/reserve", content=b"{", headers=bearer(token)), "bad")
        check(http.post("/api/v1/inventory", json={}, headers=bearer(token)), "non-admin create")
        check(http.post("/api/v1/inventory", json={}, headers=admin), "admin create invalid")
        check(
            http.post(
                "/api/v1/payment",
                json={"reservationId": reservation, "amount": "3.00"},
                headers=bearer(token),
            ),
            "payment",
        )
        check(http.get(f"/api/v1/payment/{reservation}", headers=bearer(token)), "a payment")
        check(http.get("/api/v1/nothing", headers=bearer(token)), "an unknown API route")
        check(http.get("/health"), "health")
        check(http.get("/nowhere"), "no such route")
        check(http.request("PROPFIND", "/api/v1/products"), "an unknown method")
        check(http.post("/api/v1/auth/signup", content=b"x" * (1024 * 1024 + 1)), "too large")
        check(http.get("/api/v1/products?" + "q" * 20_000), "URI too long")
        check(
            http.post("/api/v1/auth/logout", headers={"Cookie": refresh_cookie(refreshed)}),
            "logout",
        )
        limited = None
        for _ in range(30):
            answer = http.post("/api/v1/auth/refresh")
            if answer.status_code == 429:
                limited = check(answer, "rate limited")
                break
        assert limited is not None
        assert limited.headers["retry-after"] == "1"
    assert {"login 200", "refresh 200", "rate limited 429", "URI too long 414"} <= set(seen)
    tried(
        "attack rejected",
        f"{len(seen)} kinds of answer (every route, 2xx to 429 and nginx's own errors): "
        "nosniff, X-Frame-Options DENY, CSP default-src 'none', no-referrer, "
        "same-origin CORP and Cache-Control no-store on each, login and refresh included",
    )


# ------------------------------------------------------------------ 14 and 10: outages
@pytest.fixture
def partial(tmp_path: Path, stack: LocalStack) -> Iterator[LocalStack]:
    """The user and inventory services behind the gateway; payment is down."""
    specs = [spec for spec in SERVICES if spec.name in ("user", "inventory")]
    single = [ServiceSpec(spec.name, spec.factory, spec.placeholder, 1, spec.env) for spec in specs]
    with LocalStack(tmp_path, env=stack.env, services=single) as running:
        yield running


def assert_503_with_retry_after(answer: httpx.Response, code: str, what: str) -> None:
    assert_json_error(answer, 503, code)
    assert int(answer.headers["retry-after"]) >= 1, (what, answer.headers)
    assert_secure_headers(answer.headers, what)


def test_a_service_or_token_check_that_is_down_is_a_json_503_with_retry_after(
    partial: LocalStack, tried: Tried
) -> None:
    with gateway_client(partial, timeout=20) as http:
        _, token = sign_in(http)
        # The payment service is down: 503, as docs/reference-app.md says.
        payment = http.post(
            "/api/v1/payment", json={"reservationId": "r", "amount": "1.00"}, headers=bearer(token)
        )
        assert_503_with_retry_after(payment, "service_unavailable", "payment down")
        read = http.get("/api/v1/payment/r", headers=bearer(token))
        assert_503_with_retry_after(read, "service_unavailable", "payment down")
        tried("fault survived", "payment service down: 503 JSON with Retry-After, not a 502")

        # The user service hangs: the token check times out (5 s), a 503, not a 500.
        (user,) = partial.processes["user"]
        assert user.pid is not None
        os.kill(user.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            hung = http.post(
                "/api/v1/inventory/reserve",
                json={"productId": "p", "quantity": 1},
                headers=bearer(f"never-checked-{uuid.uuid4().hex}"),
            )
            waited = time.monotonic() - started
        finally:
            os.kill(user.pid, signal.SIGCONT)
        assert_503_with_retry_after(hung, "auth_unavailable", "token check timed out")
        assert waited < 10, waited
        tried("fault survived", "user service hung during a token check: 503 with Retry-After")

        # The user service is gone: the token check cannot connect, a 503 at once.
        user.stop()
        for path in ("/api/v1/inventory/reserve", "/api/v1/auth/me", "/api/v1/payment"):
            down = http.post(path, json={}, headers=bearer(f"unchecked-{uuid.uuid4().hex}"))
            assert_503_with_retry_after(down, "auth_unavailable", f"user down: {path}")
        login = http.post("/api/v1/auth/login", json={"email": "a@example.com", "password": "x"})
        assert_503_with_retry_after(login, "service_unavailable", "user down: login")
        # What needs no token check still works.
        assert http.get("/api/v1/products").status_code == 200
        tried(
            "fault survived",
            "user service down: token checks and logins 503 with Retry-After, products served",
        )


# ------------------------------------------------------------------ 10: a login flood
FLOOD_ADDRESSES = 50
FLOOD_PER_ADDRESS = 10  # inside each address's own limit (burst 10)
GLOBAL_RATE, GLOBAL_BURST = 10, 20  # nginx.conf: zone refapp_password


async def test_a_login_flood_from_many_addresses_is_refused_at_the_gateway(
    stack: LocalStack, product: dict[str, str], tried: Tried
) -> None:
    with gateway_client(stack) as http:
        victim, _ = sign_in(http)
        _, bystander = sign_in(http)  # its token is not checked yet: no cached verify
    email = victim.json()["user"]["email"]

    async def attacker(n: int) -> list[httpx.Response]:
        transport = httpx.AsyncHTTPTransport(local_address=loopback_address())
        async with httpx.AsyncClient(
            base_url=stack.gateway_url, transport=transport, timeout=30
        ) as client:
            guesses = (
                client.post(
                    "/api/v1/auth/login", json={"email": email, "password": f"guess-{n}-{i}"}
                )
                for i in range(FLOOD_PER_ADDRESS)
            )
            return list(await asyncio.gather(*guesses))

    async def shopper() -> httpx.Response:
        await asyncio.sleep(0.3)  # while the flood is on
        transport = httpx.AsyncHTTPTransport(local_address=loopback_address())
        async with httpx.AsyncClient(
            base_url=stack.gateway_url, transport=transport, timeout=30
        ) as client:
            return await client.post(
                "/api/v1/inventory/reserve",
                json={"productId": product["id"], "quantity": 1},
                headers=bearer(bystander),
            )

    started = time.monotonic()
    *floods, reserve = await asyncio.gather(
        *(attacker(n) for n in range(FLOOD_ADDRESSES)), shopper()
    )
    took = time.monotonic() - started
    answers = [answer for flood in floods for answer in flood]
    codes = [answer.status_code for answer in answers]
    assert set(codes) <= {401, 429, 503}, sorted(set(codes))
    for answer in answers:
        if answer.status_code != 401:
            assert_json_error(answer, answer.status_code)
            assert int(answer.headers["retry-after"]) >= 1
    # Only the global bucket's worth reached the user service (401, or its own 503).
    reached = codes.count(401) + codes.count(503)
    assert reached <= GLOBAL_BURST + GLOBAL_RATE * took + 2, (reached, took)
    assert codes.count(429) >= len(codes) // 2, codes.count(429)
    # The bystander's token check was never a 500: served, or a 503 to retry.
    assert reserve.status_code in (201, 503), (reserve.status_code, reserve.text)
    if reserve.status_code == 503:
        assert reserve.headers["retry-after"]
    # The bucket refills: later clients are not refused.
    await asyncio.sleep(GLOBAL_BURST / GLOBAL_RATE + 1)
    with gateway_client(stack) as http:
        again = http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert again.status_code == 200, again.text
    tried(
        "attack rejected",
        f"{len(codes)} logins from {FLOOD_ADDRESSES} addresses, each inside its own limit: "
        f"{codes.count(429)} x 429 JSON at the gateway (one bucket for all), {reached} reached "
        f"the user service; a shopper's token check meanwhile: {reserve.status_code}",
    )
