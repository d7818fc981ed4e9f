"""Attacks through the gateway: forged tokens, stolen refresh tokens, forged identity, brute force.

Already proven elsewhere, not repeated here (docs/reliability.md lists them):
tests/e2e/test_user_flow.py (`test_signup_login_refresh_rotation_and_reuse`:
replaying a rotated refresh token is a 403 and revokes the newest one;
`test_forged_identity_headers_are_ignored` and
`test_authenticated_route_without_valid_token_is_401_at_the_gateway`;
`test_login_is_rate_limited_with_a_json_429`) and tests/e2e/test_shop_flow.py
(`test_another_users_reservation_cannot_be_read_paid_or_cancelled`,
`test_a_non_admin_cannot_create_or_restock_products`,
`test_a_client_sent_user_id_is_ignored`). The tests below take each of those
attacks a step further.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from reference_app.launch import SERVICES, LocalStack, UvicornServer

from commercekit.auth.tokens import DEVELOPMENT_SECRET
from commercekit.testing.servers import ServerStartError
from tests.e2e.gateway import (
    assert_json_error,
    gateway_client,
    loopback_address,
    refresh_cookie,
)
from tests.e2e.reliability.conftest import Tried

PASSWORD = "correct horse battery staple"
ISSUER = AUDIENCE = "commercekit"  # JWTSettings' defaults, which the stack keeps


# ------------------------------------------------------------------ helpers
@pytest.fixture
def http(stack: LocalStack) -> Iterator[httpx.Client]:
    """A gateway client from a fresh loopback address."""
    with gateway_client(stack) as client:
        yield client


def _signup(http: httpx.Client, headers: dict[str, str] | None = None) -> dict[str, str]:
    name = f"x{uuid.uuid4().hex[:12]}"
    user = {"username": name, "email": f"{name}@example.com", "password": PASSWORD}
    answer = http.post("/api/v1/auth/signup", json=user, headers=headers or {})
    assert answer.status_code == 201, answer.text
    return user


def _login(http: httpx.Client, email: str, headers: dict[str, str] | None = None) -> httpx.Response:
    answer = http.post(
        "/api/v1/auth/login", json={"email": email, "password": PASSWORD}, headers=headers or {}
    )
    assert answer.status_code == 200, answer.text
    return answer


def _refresh(http: httpx.Client, token: str) -> httpx.Response:
    return http.post("/api/v1/auth/refresh", headers={"Cookie": f"refreshToken={token}"})


def _raw_get(stack: LocalStack, path: str, headers: dict[str, str]) -> tuple[int, str, str]:
    """GET `path` exactly as written (httpx would resolve its dot segments first)."""
    gateway = httpx.URL(stack.gateway_url)
    assert gateway.host
    assert gateway.port
    conn = HTTPConnection(
        gateway.host, gateway.port, timeout=10, source_address=(loopback_address(), 0)
    )
    try:
        conn.request("GET", path, headers=headers)
        answer = conn.getresponse()
        return answer.status, answer.getheader("content-type") or "", answer.read().decode()
    finally:
        conn.close()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mint(key: str, **changes: Any) -> str:
    """An access token as the user service makes them, with `changes` to its claims or header.

    ``alg`` and ``typ`` change the header; a claim set to None is left out.
    """
    now = dt.datetime.now(dt.UTC)
    claims: dict[str, Any] = {
        "sub": str(uuid.uuid4()),
        "role": "user",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + dt.timedelta(minutes=5),
        "jti": uuid.uuid4().hex,
    }
    algorithm = changes.pop("alg", "HS256")
    typ = changes.pop("typ", "at+jwt")
    claims.update(changes)
    claims = {name: value for name, value in claims.items() if value is not None}
    return jwt.encode(claims, key, algorithm=algorithm, headers={"typ": typ})


def _unsigned(alg: str, role: str = "admin") -> str:
    """An ``alg: none``-style token: valid claims, no signature."""
    now = int(time.time())
    header = {"alg": alg, "typ": "at+jwt"}
    claims: dict[str, Any] = {"sub": str(uuid.uuid4()), "role": role, "iss": ISSUER}
    claims |= {"aud": AUDIENCE}
    claims |= {"iat": now, "exp": now + 300}
    encode = _b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode())
    return f"{encode[0]}.{encode[1]}."


def _tampered(token: str, **changes: Any) -> str:
    """`token` with its claims changed and its (now wrong) signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(_unb64(payload)) | changes
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


# ------------------------------------------------------------------ JWT
def _forgeries(secret: str, genuine: str) -> dict[str, str]:
    """Each token below differs from an accepted one by one defect."""
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    future = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    return {
        "alg none": _unsigned("none"),
        "alg None": _unsigned("None"),
        "alg NONE": _unsigned("NONE"),
        "signed with another key": _mint(secrets.token_urlsafe(48), role="admin"),
        "signed with HS512 and the real key": _mint(secret, alg="HS512"),
        "signed with HS384 and the real key": _mint(secret, alg="HS384"),
        "expired ten minutes ago": _mint(secret, iat=past - dt.timedelta(minutes=5), exp=past),
        "not valid before an hour from now": _mint(secret, nbf=future),
        "issued an hour in the future": _mint(secret, iat=future, exp=future),
        "a genuine token with role=admin": _tampered(genuine, role="admin"),
        "a genuine token with another sub": _tampered(genuine, sub=str(uuid.uuid4())),
        "a genuine token with a later exp": _tampered(genuine, exp=int(time.time()) + 86_400),
        "a genuine token with its signature cut": genuine.rsplit(".", 1)[0] + ".",
        "wrong audience": _mint(secret, aud="another-service"),
        "audience list without ours": _mint(secret, aud=["another-service"]),
        "no audience": _mint(secret, aud=None),
        "wrong issuer": _mint(secret, iss="https://evil.example.com"),
        "no issuer": _mint(secret, iss=None),
        "no expiry": _mint(secret, exp=None),
        "no subject": _mint(secret, sub=None),
        "typ JWT (not an access token)": _mint(secret, typ="JWT"),
        "a refresh token as bearer": "",  # filled in by the test
    }


def test_forged_and_tampered_access_tokens_are_401(
    stack: LocalStack, http: httpx.Client, tried: Tried
) -> None:
    secret = stack.env["JWT_ACCESS_SECRET"]
    user = _signup(http)
    login = _login(http, user["email"])
    genuine = login.json()["accessToken"]
    user_id = login.json()["user"]["id"]
    # The control: a token minted here like the service mints them is accepted,
    # so each forgery below fails for its one defect, not for the way it was made.
    for token, role in ((genuine, "user"), (_mint(secret, sub=user_id), "user")):
        me = http.get("/api/v1/auth/me", headers=_bearer(token))
        assert me.status_code == 200, me.text
        assert (me.json()["id"], me.json()["role"]) == (user_id, role)

    forgeries = _forgeries(secret, genuine)
    forgeries["a refresh token as bearer"] = refresh_cookie(login)
    sku = f"FORGED-{uuid.uuid4().hex[:8]}"
    for name, token in forgeries.items():
        for method, path, body in (
            ("GET", "/api/v1/auth/me", None),
            ("POST", "/api/v1/inventory", {"sku": sku, "name": "x", "price": "1.00", "stock": 1}),
            ("GET", f"/api/v1/payment/{uuid.uuid4()}", None),
        ):
            answer = http.request(method, path, json=body, headers=_bearer(token))
            assert answer.status_code == 401, (name, path, answer.text)
            assert_json_error(answer, 401, "unauthorized")
    # No forged admin created the product: the real admin still can.
    (inventory,) = stack.urls("inventory")[:1]
    admin = {"X-User-Id": str(uuid.uuid4()), "X-User-Role": "admin"}
    body = {"sku": sku, "name": "x", "price": "1.00", "stock": 1}
    assert httpx.post(inventory + "/api/v1/inventory", json=body, headers=admin).status_code == 201
    for name in forgeries:
        tried("attack rejected", f"JWT {name}: 401 on the user, inventory and payment routes")


def _verify_calls(stack: LocalStack) -> float:
    """How many token checks the user service answered (its latency histogram's count)."""
    (user,) = stack.urls("user")
    metrics = httpx.get(user + "/metrics", timeout=10).text
    pattern = r'http_request_duration_seconds_count\{[^}]*route="/api/v1/auth/verify"[^}]*\} (\S+)'
    return sum(float(n) for n in re.findall(pattern, metrics))


def test_a_cached_token_check_ends_with_the_token_and_covers_no_forgery(
    stack: LocalStack, http: httpx.Client, tried: Tried
) -> None:
    secret = stack.env["JWT_ACCESS_SECRET"]
    user_id = str(uuid.uuid4())
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=4)
    token = _mint(secret, sub=user_id, exp=expires)
    before = _verify_calls(stack)
    for _ in range(5):
        me = http.get("/api/v1/auth/me", headers=_bearer(token))
        assert me.status_code == 200, me.text
        assert me.json()["id"] == user_id
    # One check by the user service; nginx answered the other four from its cache.
    assert _verify_calls(stack) - before == 1
    # While the genuine token is cached, no variant of it rides on that answer.
    for name, variant in (
        ("role=admin", _tampered(token, role="admin")),
        ("another sub", _tampered(token, sub=str(uuid.uuid4()))),
        ("signature cut", token.rsplit(".", 1)[0] + "."),
        ("one character more", token + "A"),
    ):
        answer = http.get("/api/v1/auth/me", headers=_bearer(variant))
        assert_json_error(answer, 401, "unauthorized")
        tried("attack rejected", f"JWT {name} of a token whose check is cached: 401")
    # Past its expiry (and the verifier's leeway), the cached answer is gone with it.
    leeway = 5
    time.sleep(max(0.0, (expires - dt.datetime.now(dt.UTC)).total_seconds() + leeway + 1))
    answer = http.get("/api/v1/auth/me", headers=_bearer(token))
    assert_json_error(answer, 401, "unauthorized")
    tried("attack rejected", "an expired token whose check was cached: 401")


# ------------------------------------------------------------------ refresh tokens
def test_a_stolen_refresh_token_revokes_only_its_own_family(
    stack: LocalStack, tried: Tried
) -> None:
    with gateway_client(stack) as victim, gateway_client(stack) as thief:
        user = _signup(victim)
        stolen = refresh_cookie(_login(victim, user["email"]))
        laptop = refresh_cookie(_login(victim, user["email"]))  # another session
        # The victim keeps using the session: the stolen token is two rotations old.
        second = refresh_cookie(_refresh(victim, stolen))
        third = refresh_cookie(_refresh(victim, second))
        replay = _refresh(thief, stolen)
        assert_json_error(replay, 403, "refresh_token_reused")
        assert "refreshToken=" in replay.headers["set-cookie"]  # the cookie is cleared
        # That session is over for the thief and the victim alike: the spent
        # tokens are reuse again (403), the newest one is revoked (401)...
        for token in (stolen, second):
            assert_json_error(_refresh(thief, token), 403, "refresh_token_reused")
        assert_json_error(_refresh(victim, third), 401)
        # ...and only that one: the victim's other session still rotates.
        rotated = _refresh(victim, laptop)
        assert rotated.status_code == 200, rotated.text
        assert rotated.json()["accessToken"]
    tried("attack rejected", "a refresh token replayed after two rotations: family revoked")
    tried("attack rejected", "refresh-token reuse leaves the user's other sessions alone")


async def test_a_refresh_token_raced_twice_is_used_at_most_once(
    stack: LocalStack, tried: Tried
) -> None:
    with gateway_client(stack) as http:
        user = _signup(http)
        token = refresh_cookie(_login(http, user["email"]))
    transport = httpx.AsyncHTTPTransport(local_address=loopback_address())
    async with httpx.AsyncClient(
        base_url=stack.gateway_url, transport=transport, timeout=30
    ) as client:
        answers = await asyncio.gather(
            *(
                client.post("/api/v1/auth/refresh", headers={"Cookie": f"refreshToken={token}"})
                for _ in range(4)
            )
        )
        codes = sorted(a.status_code for a in answers)
        assert codes.count(200) <= 1, codes
        assert set(codes) <= {200, 401, 403}, codes
        assert 403 in codes, codes
        # Whatever won the race belongs to a revoked family now.
        for winner in (a for a in answers if a.status_code == 200):
            again = await client.post(
                "/api/v1/auth/refresh",
                headers={"Cookie": f"refreshToken={refresh_cookie(winner)}"},
            )
            assert_json_error(again, 401)
    tried("attack rejected", "one refresh token sent 4 times at once: used at most once")


# ------------------------------------------------------------------ identity headers
def test_identity_headers_sent_to_public_routes_are_ignored(
    stack: LocalStack, http: httpx.Client, tried: Tried
) -> None:
    victim_id = str(uuid.uuid4())
    forged = {
        "X-User-Id": victim_id,
        "X-User-Role": "admin",
        "X-Forwarded-User": victim_id,
        "X-Internal-Caller": "inventory",
    }
    # Signup and login with forged headers: the account is a plain user, itself.
    user = _signup(http, headers=forged)
    login = _login(http, user["email"], headers=forged)
    assert login.json()["user"]["id"] != victim_id
    token = login.json()["accessToken"]
    me = http.get("/api/v1/auth/me", headers={**forged, **_bearer(token)})
    assert me.json()["role"] == "user"
    assert me.json()["id"] == login.json()["user"]["id"]
    # The public catalogue answers the same with or without them, and stays read-only.
    plain = http.get("/api/v1/products", params={"limit": 5})
    with_forged = http.get("/api/v1/products", params={"limit": 5}, headers=forged)
    assert with_forged.status_code == plain.status_code == 200
    assert with_forged.json() == plain.json()
    write = http.post(
        "/api/v1/products", json={"sku": "X", "name": "x", "price": "1", "stock": 1}, headers=forged
    )
    assert_json_error(write, 405)
    tried("attack rejected", "X-User-Id / X-User-Role sent to signup, login, products: ignored")


def test_path_tricks_through_public_routes_reach_no_protected_handler(
    stack: LocalStack, http: httpx.Client, tried: Tried
) -> None:
    # A real reservation of a real user, made on the inventory service directly.
    owner = _signup(http)
    owner_id = _login(http, owner["email"]).json()["user"]["id"]
    (inventory,) = stack.urls("inventory")[:1]
    admin = {"X-User-Id": str(uuid.uuid4()), "X-User-Role": "admin"}
    as_owner = {"X-User-Id": owner_id, "X-User-Role": "user"}
    sku = f"PATH-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=inventory, timeout=10) as direct:
        product = direct.post(
            "/api/v1/inventory",
            json={"sku": sku, "name": "x", "price": "1.00", "stock": 3},
            headers=admin,
        ).json()
        held = direct.post(
            "/api/v1/inventory/reserve",
            json={"productId": product["id"], "quantity": 1},
            headers=as_owner,
        )
        assert held.status_code == 201, held.text
    rid = held.json()["reservationId"]
    forged = {"X-User-Id": owner_id, "X-User-Role": "admin"}
    tricks = [
        f"/api/v1/products/../inventory/reservations/{rid}",
        f"/api/v1/products/%2e%2e/inventory/reservations/{rid}",
        f"/api/v1/products/..%2Finventory%2Freservations%2F{rid}",
        f"/api/v1/products/%2E%2E%2Finventory/reservations/{rid}",
        f"/api/v1/products//../inventory/reservations/{rid}",
        f"/api/v1/auth/login/../../inventory/reservations/{rid}",
        f"/health/../api/v1/inventory/reservations/{rid}",
        f"//api/v1/inventory/reservations/{rid}",
        f"/api/v1/products?/../inventory/reservations/{rid}",
    ]
    for path in tricks:
        status, content_type, text = _raw_get(stack, path, forged)
        # Only the owner's verified token shows this reservation; these reach no such handler.
        assert not (status == 200 and rid in text), (path, text)
        assert status < 500, (path, status, text)
        assert content_type.startswith("application/json"), (path, content_type)
    tried("attack rejected", f"{len(tricks)} dot-dot / encoded paths from public routes: no data")


# ------------------------------------------------------------------ other users, admins
def test_an_idempotency_key_never_names_another_users_reservation(
    stack: LocalStack, tried: Tried
) -> None:
    with gateway_client(stack) as alice_http, gateway_client(stack) as mallory_http:
        alice = _bearer(_login(alice_http, _signup(alice_http)["email"]).json()["accessToken"])
        mallory = _bearer(
            _login(mallory_http, _signup(mallory_http)["email"]).json()["accessToken"]
        )
        (inventory,) = stack.urls("inventory")[:1]
        admin = {"X-User-Id": str(uuid.uuid4()), "X-User-Role": "admin"}
        sku = f"IDEM-{uuid.uuid4().hex[:8]}"
        body = {"sku": sku, "name": "x", "price": "1.00", "stock": 5}
        product = httpx.post(inventory + "/api/v1/inventory", json=body, headers=admin).json()
        cart = {"productId": product["id"], "quantity": 1}
        key = {"Idempotency-Key": f"order-{uuid.uuid4().hex}"}
        first = alice_http.post("/api/v1/inventory/reserve", json=cart, headers={**alice, **key})
        assert first.status_code == 201, first.text
        theirs = first.json()["reservationId"]
        # Mallory replays Alice's key and cart: a reservation of her own, never Alice's.
        replay = mallory_http.post(
            "/api/v1/inventory/reserve", json=cart, headers={**mallory, **key}
        )
        assert replay.status_code == 201, replay.text
        assert replay.json()["reservationId"] != theirs
        # Paying with Alice's key and reservation is still a 404 for Mallory.
        pay = mallory_http.post(
            "/api/v1/payment",
            json={"reservationId": theirs, "amount": "1.00", "paymentMethod": "tok_success"},
            headers={**mallory, **key},
        )
        assert_json_error(pay, 404, "reservation_not_found")
        mine = alice_http.get(f"/api/v1/inventory/reservations/{theirs}", headers=alice)
        assert mine.json()["status"] == "PENDING"
        assert_json_error(alice_http.get(f"/api/v1/payment/{theirs}", headers=alice), 404)
    tried("attack rejected", "another user's Idempotency-Key: never their reservation or payment")


def test_a_non_admin_gets_403_before_anything_is_checked(
    stack: LocalStack, http: httpx.Client, tried: Tried
) -> None:
    user = _bearer(_login(http, _signup(http)["email"]).json()["accessToken"])
    (inventory,) = stack.urls("inventory")[:1]
    admin = {"X-User-Id": str(uuid.uuid4()), "X-User-Role": "admin"}
    sku = f"ADM-{uuid.uuid4().hex[:8]}"
    body = {"sku": sku, "name": "x", "price": "1.00", "stock": 2}
    product = httpx.post(inventory + "/api/v1/inventory", json=body, headers=admin).json()
    # Whether the product exists or the body is valid, a user learns only "forbidden".
    attempts = [
        ("/api/v1/inventory", {**body, "sku": f"{sku}-2"}),
        ("/api/v1/inventory", {"sku": 1}),
        ("/api/v1/inventory", body),  # an SKU that exists: no 409 either
        (f"/api/v1/inventory/{product['id']}/restock", {"quantity": 5}),
        (f"/api/v1/inventory/{uuid.uuid4()}/restock", {"quantity": 5}),
        (f"/api/v1/inventory/{product['id']}/restock", {"quantity": -5}),
        ("/api/v1/inventory/not-a-uuid/restock", {"quantity": 5}),
    ]
    forged_role = {**user, "X-User-Role": "admin"}
    for path, payload in attempts:
        answer = http.post(path, json=payload, headers=forged_role)
        assert_json_error(answer, 403, "forbidden")
    assert http.get(f"/api/v1/products/{product['id']}").json()["stock"] == 2
    tried("attack rejected", "non-admin create/restock, valid or not, known or not: 403 only")


# ------------------------------------------------------------------ brute force
async def test_login_brute_force_hits_the_rate_limit_and_spares_others(
    stack: LocalStack, tried: Tried
) -> None:
    with gateway_client(stack) as http:
        victim = _signup(http)
    attacker = loopback_address()
    transport = httpx.AsyncHTTPTransport(local_address=attacker)
    limits = httpx.Limits(max_connections=40)
    async with httpx.AsyncClient(
        base_url=stack.gateway_url, transport=transport, limits=limits, timeout=30
    ) as client:

        async def guess(n: int) -> httpx.Response:
            # Spoofed client addresses do not buy a fresh bucket.
            spoof = {"X-Forwarded-For": f"10.9.{n // 250}.{n % 250}", "X-Real-IP": f"10.8.0.{n}"}
            body = {"email": victim["email"], "password": f"guess-{n:04d}"}
            return await client.post("/api/v1/auth/login", json=body, headers=spoof)

        started = time.monotonic()
        answers = await asyncio.gather(*(guess(n) for n in range(40)))
        took = time.monotonic() - started
        codes = [a.status_code for a in answers]
        assert set(codes) <= {401, 429}, codes
        limited = [a for a in answers if a.status_code == 429]
        assert limited, codes
        for answer in limited:
            assert_json_error(answer, 429, "too_many_requests")
            assert int(answer.headers["retry-after"]) >= 1
        # burst 10 + 5/s: the guesses that reached the password check.
        assert codes.count(401) <= 11 + 5 * took + 1, (codes.count(401), took)

        # Someone else, from another address, logs in meanwhile.
        with gateway_client(stack) as bystander:
            other = _signup(bystander)
            _login(bystander, other["email"])
        # The attacker's address is not locked out for good: after Retry-After,
        # the right password works from it.
        await asyncio.sleep(int(limited[0].headers["retry-after"]) + 1.5)
        ok = await client.post(
            "/api/v1/auth/login", json={"email": victim["email"], "password": PASSWORD}
        )
        assert ok.status_code == 200, ok.text
    tried(
        "attack rejected",
        f"40 concurrent password guesses with spoofed X-Forwarded-For: "
        f"{len(limited)} x 429 JSON with Retry-After, other clients unaffected",
    )


# ------------------------------------------------------------------ Unicode twins
KELVIN = "\N{KELVIN SIGN}"


def test_a_unicode_twin_of_an_admin_address_is_409_never_an_admin(
    stack: LocalStack, tmp_path: Path, tried: Tried
) -> None:
    tag = uuid.uuid4().hex[:8]
    admin_email = f"kate.{tag}@example.com"  # a k, so it has a KELVIN SIGN twin
    user_only = [spec for spec in SERVICES if spec.name == "user"]
    env = {**stack.env, "ADMIN_EMAILS": admin_email.upper()}
    with LocalStack(tmp_path, env=env, services=user_only) as shop:

        def client() -> httpx.Client:  # each from its own address: its own rate-limit bucket
            transport = httpx.HTTPTransport(local_address=loopback_address())
            return httpx.Client(base_url=shop.gateway_url, transport=transport, timeout=10)

        with client() as http:
            body = {"username": f"kate_{tag}", "email": admin_email, "password": PASSWORD}
            assert http.post("/api/v1/auth/signup", json=body).status_code == 201
            admin = _login(http, admin_email)
            me = http.get("/api/v1/auth/me", headers=_bearer(admin.json()["accessToken"]))
            assert me.json()["role"] == "admin"
            kelvin_name = {"username": f"{KELVIN}ate_{tag}", "email": f"o.{tag}@example.com"}
            taken = http.post("/api/v1/auth/signup", json={**kelvin_name, "password": PASSWORD})
            assert_json_error(taken, 409, "user_exists")
        twins = {
            "KELVIN SIGN for k": f"{KELVIN}ate.{tag}@example.com",
            "KELVIN SIGN, capitals": f"{KELVIN}ATE.{tag}@EXAMPLE.COM",
            "full-width letters": f"ｋａｔｅ.{tag}@example.com",  # noqa: RUF001
            "a ZERO WIDTH SPACE inside": f"ka\u200bte.{tag}@example.com",
            "a SOFT HYPHEN inside": f"ka\u00adte.{tag}@example.com",
        }
        for name, twin in twins.items():
            with client() as http:
                attempt = {"username": f"t{uuid.uuid4().hex[:12]}", "email": twin}
                answer = http.post("/api/v1/auth/signup", json={**attempt, "password": "x" * 12})
                assert_json_error(answer, 409, "user_exists")
                # Signing in with the twin's spelling is the admin's own account (its password).
                same = _login(http, twin)
                assert same.json()["user"]["id"] == admin.json()["user"]["id"]
            tried("attack rejected", f"signup with a twin of an admin address ({name}): 409")
    tried("attack rejected", "signup with the KELVIN SIGN twin of a taken username: 409")


# ------------------------------------------------------------------ login flood
async def _log_in_after_a_flood(client: httpx.AsyncClient, email: str) -> None:
    """Log in, waiting out 429 and 503 answers (their Retry-After) for 15 s at most."""
    deadline = time.monotonic() + 15
    while True:
        answer = await client.post(
            "/api/v1/auth/login", json={"email": email, "password": PASSWORD}
        )
        if answer.status_code not in (429, 503) or time.monotonic() > deadline:
            break
        await asyncio.sleep(float(answer.headers.get("retry-after", "1")))
    assert answer.status_code == 200, answer.text


async def test_a_login_flood_never_starves_the_token_check(stack: LocalStack, tried: Tried) -> None:
    secret = stack.env["JWT_ACCESS_SECRET"]
    with gateway_client(stack) as http:
        accounts = [_signup(http)["email"] for _ in range(5)]
    addresses = [loopback_address() for _ in range(20)]
    clients = [
        httpx.AsyncClient(
            base_url=stack.gateway_url,
            transport=httpx.AsyncHTTPTransport(local_address=address),
            timeout=30,
        )
        for address in addresses
    ]
    bystander = httpx.AsyncClient(
        base_url=stack.gateway_url,
        transport=httpx.AsyncHTTPTransport(local_address=loopback_address()),
        timeout=30,
    )
    (user_service,) = stack.urls("user")
    nginx = httpx.AsyncClient(base_url=user_service, timeout=30)  # the check, as nginx asks it
    try:

        async def log_in(n: int) -> httpx.Response:
            # 10 logins from each of 20 addresses: each inside its own rate limit.
            body = {"email": accounts[n % len(accounts)], "password": PASSWORD}
            return await clients[n % len(clients)].post("/api/v1/auth/login", json=body)

        logins = [asyncio.create_task(log_in(n)) for n in range(200)]
        checks: list[float] = []
        while not all(task.done() for task in logins):
            # A fresh token each time: nginx has no cached answer, the user service checks it.
            token = _mint(secret)
            started = time.monotonic()
            verified = await nginx.get("/api/v1/auth/verify", headers=_bearer(token))
            checks.append(time.monotonic() - started)
            assert verified.status_code == 200, verified.text
            # And a bystander's request through the gateway, with a token not checked yet.
            me = await bystander.get("/api/v1/auth/me", headers=_bearer(_mint(secret)))
            assert me.status_code == 200, me.text
            await asyncio.sleep(0.02)
        answers = await asyncio.gather(*logins)
    finally:
        for client in [*clients, bystander, nginx]:
            await client.aclose()
    codes = [answer.status_code for answer in answers]
    assert set(codes) <= {200, 429, 503}, codes
    assert 200 in codes, codes
    for answer in answers:
        if answer.status_code != 200:
            assert_json_error(answer, answer.status_code)
            assert int(answer.headers["retry-after"]) >= 1
    assert len(checks) >= 5, checks
    # Far below the gateway's 5 s timeout for the check, generous for a loaded 2-core machine
    # (the bystander's requests, two calls to the user service each, are 200 without a bound).
    assert max(checks) < 1.0, sorted(checks)[-5:]
    # Once the flood is over (and the gateway's login buckets have refilled), each signs in.
    transport = httpx.AsyncHTTPTransport(local_address=loopback_address())
    async with httpx.AsyncClient(
        base_url=stack.gateway_url, transport=transport, timeout=30
    ) as after:
        for email in accounts:
            await _log_in_after_a_flood(after, email)
    tried(
        "fault survived",
        f"200 concurrent logins from 20 addresses: {codes.count(200)} x 200, "
        f"{codes.count(429)} x 429 and {codes.count(503)} x 503 JSON with Retry-After, never "
        f"a 5xx; {len(checks)} token checks meanwhile, each within 1 s "
        f"(slowest {max(checks):.2f} s), and as many bystander requests: 200",
    )


# ------------------------------------------------------------------ weak secrets
WEAK_SECRETS = {
    "unset": None,
    "commercekit's development default": DEVELOPMENT_SECRET,
    "the original system's default": "your_super_secret_key",
    "10 characters": "k3Y9xQ2pZ7",
    "a well-known word": "changeme",
    "40 repeated characters": "a" * 40,
}
REASONS = {
    "unset": "needs a secret",
    "commercekit's development default": "well-known default",
    "the original system's default": "at least 32 bytes",
    "10 characters": "at least 32 bytes",
    "a well-known word": "at least 32 bytes",
    "40 repeated characters": "too repetitive",
}


def _user_service(
    stack: LocalStack, workdir: Path, secret: str | None, **overrides: str | None
) -> UvicornServer:
    """The user service's process, in production, with `secret` (None: unset)."""
    env = {**stack.env, "ENVIRONMENT": "production"}
    for name, value in overrides.items():
        env.pop(name, None)
        if value is not None:
            env[name] = value
    env.pop("JWT_ACCESS_SECRET", None)
    env.pop("COMMERCEKIT_JWT_SECRET", None)
    if secret is not None:
        env["JWT_ACCESS_SECRET"] = secret
    return UvicornServer(workdir, "reference_app.user.main:app_from_env", env=env)


@pytest.mark.parametrize("weak", list(WEAK_SECRETS))
def test_the_user_service_refuses_a_weak_jwt_secret_in_production(
    stack: LocalStack, tmp_path: Path, tried: Tried, weak: str
) -> None:
    server = _user_service(stack, tmp_path, WEAK_SECRETS[weak])
    with pytest.raises(ServerStartError, match="exited with code") as refused:
        server.start()
    message = str(refused.value)
    assert "JWT_ACCESS_SECRET" in message, message
    assert REASONS[weak] in message, message
    assert not server.running
    tried("attack rejected", f"user service in production with a JWT secret {weak}: refused")


def test_the_user_service_starts_with_a_strong_secret_in_production(
    stack: LocalStack, tmp_path: Path
) -> None:
    # The control of the test above: the same start, a random 48-byte secret.
    with _user_service(stack, tmp_path, secrets.token_urlsafe(48)) as server:
        assert httpx.get(server.url + "/health", timeout=10).json() == {"status": "ok"}


def test_a_refused_secret_is_not_written_to_the_log(
    stack: LocalStack, tmp_path: Path, tried: Tried
) -> None:
    secret = "Zq7-pX2!rB"  # short, so refused; must not appear anywhere
    # The smallest production setup (no ADMIN_EMAILS): the secret is the last setting.
    server = _user_service(stack, tmp_path, secret, ADMIN_EMAILS=None)
    with pytest.raises(ServerStartError):
        server.start()
    assert secret not in server.log_path.read_text(errors="replace")
    tried("attack rejected", "a refused JWT secret is not echoed to the service's log")
