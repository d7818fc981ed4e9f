"""The user service as its own process on a real PostgreSQL: identities and a login flood."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from reference_app.launch import UvicornServer

from commercekit.auth import normalize_identity
from commercekit.testing.servers import PostgresServer

PASSWORD = "correct horse battery staple"
KELVIN = "\N{KELVIN SIGN}"
ADMIN = "shopkeeper@example.com"  # a k, so it has a KELVIN SIGN twin
HASH_QUEUE = 8


@pytest.fixture(scope="module")
def user_service(
    postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[UvicornServer]:
    """The user service in production mode, one password check at a time."""
    url = postgres_server.create_database(f"users_{uuid.uuid4().hex[:10]}")
    env = {
        **os.environ,
        "ENVIRONMENT": "production",
        "JWT_ACCESS_SECRET": secrets.token_urlsafe(48),
        "DATABASE_URL": url,
        "ADMIN_EMAILS": f"Boss@Example.com, {ADMIN.upper()}",
        "PASSWORD_HASH_CONCURRENCY": "1",
        "PASSWORD_HASH_QUEUE": str(HASH_QUEUE),
        "LOG_LEVEL": "WARNING",
    }
    workdir = tmp_path_factory.mktemp("user-service")
    with UvicornServer(workdir, "reference_app.user.main:app_from_env", env=env) as server:
        yield server


@pytest.fixture
def http(user_service: UvicornServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=user_service.url, timeout=30) as client:
        yield client


def _signup(http: httpx.Client, username: str, email: str) -> httpx.Response:
    return http.post(
        "/api/v1/auth/signup", json={"username": username, "email": email, "password": PASSWORD}
    )


def _login(http: httpx.Client, **identifier: str) -> httpx.Response:
    return http.post("/api/v1/auth/login", json={**identifier, "password": PASSWORD})


def _role(http: httpx.Client, login: httpx.Response) -> str:
    token = login.json()["accessToken"]
    verified = http.get("/api/v1/auth/verify", headers={"Authorization": f"Bearer {token}"})
    assert verified.status_code == 200, verified.text
    return verified.headers["X-User-Role"]


def test_a_non_ascii_capital_signs_in_with_any_case_and_its_twins_are_409(
    http: httpx.Client,
) -> None:
    tag = uuid.uuid4().hex[:6]
    name, email = f"Élise_{tag}", f"Élise.{tag}@Example.com"
    assert _signup(http, name, email).status_code == 201
    for identifier in (
        {"email": email.lower()},
        {"email": f"élise.{tag}@example.com"},
        {"email": f"E\u0301LISE.{tag}@EXAMPLE.COM"},  # decomposed, capitals
        {"username": f"élise_{tag}"},
        {"username": name.upper()},
    ):
        login = _login(http, **identifier)
        assert login.status_code == 200, (identifier, login.text)
        # Shown as typed at signup, whatever spelling signed in.
        assert (login.json()["user"]["username"], login.json()["user"]["email"]) == (name, email)
    for twin_name, twin_email in (
        (f"other_{tag}", f"élise.{tag}@example.com"),
        (f"other_{tag}", f"ÉLISE.{tag}@EXAMPLE.COM"),
        (f"other_{tag}", f"e\u0301lise.{tag}@example.com"),
        (f"élise_{tag}", f"other.{tag}@example.com"),
        (f"ÉLISE_{tag}", f"other.{tag}@example.com"),
    ):
        twin = _signup(http, twin_name, twin_email)
        assert twin.status_code == 409, (twin_name, twin_email, twin.text)
        assert twin.json()["error"]["code"] == "user_exists"


def test_the_kelvin_sign_twin_of_an_admin_address_is_409_not_an_admin(
    http: httpx.Client,
) -> None:
    assert _signup(http, "shopkeeper", ADMIN).status_code == 201
    admin = _login(http, email=ADMIN)
    assert _role(http, admin) == "admin"
    for twin in (f"shop{KELVIN}eeper@example.com", f"SHOP{KELVIN}EEPER@example.com"):
        assert twin.lower() == ADMIN  # one address to Python's lower()...
        assert twin.encode("ascii", "replace").lower() != ADMIN.encode()  # ...two to C-locale SQL
        answer = _signup(http, f"twin_{uuid.uuid4().hex[:6]}", twin)
        assert answer.status_code == 409, answer.text
        # Signing in with the twin's spelling is the admin's own account, with its password.
        login = _login(http, email=twin)
        assert login.status_code == 200, login.text
        assert login.json()["user"]["id"] == admin.json()["user"]["id"]
    # Usernames too: the KELVIN SIGN spelling of the admin's name is taken.
    assert _signup(http, f"shop{KELVIN}eeper", "someone.else@example.com").status_code == 409


def test_the_role_is_matched_on_the_same_key_as_the_account(http: httpx.Client) -> None:
    # ADMIN_EMAILS lists Boss@Example.com: its first signup, in any spelling, is the admin.
    spelling = "ＢＯＳＳ@example.com"  # full width  # noqa: RUF001
    assert normalize_identity(spelling) == "boss@example.com"
    assert _signup(http, "the_boss", spelling).status_code == 201
    assert _role(http, _login(http, email="boss@example.com")) == "admin"
    assert _signup(http, "boss_twin", "BOSS@EXAMPLE.COM").status_code == 409
    plain = _signup(http, f"u{uuid.uuid4().hex[:8]}", f"k{uuid.uuid4().hex[:8]}@example.com")
    assert plain.status_code == 201


async def test_a_login_flood_never_makes_the_token_check_wait(
    user_service: UvicornServer, http: httpx.Client
) -> None:
    accounts = [f"flood.{uuid.uuid4().hex[:10]}@example.com" for _ in range(5)]
    for email in accounts:
        assert _signup(http, email.split("@")[0].replace(".", "_"), email).status_code == 201
    token = _login(http, email=accounts[0]).json()["accessToken"]
    bearer = {"Authorization": f"Bearer {token}"}
    flooding = threading.Event()
    over = threading.Event()

    def check_tokens() -> list[float]:
        # Its own thread and connection, as the gateway's: the times are the
        # service's, not this test's event loop busy sending the flood.
        took: list[float] = []
        with httpx.Client(base_url=user_service.url, timeout=30) as gateway:
            assert gateway.get("/api/v1/auth/verify", headers=bearer).status_code == 200
            flooding.set()
            while not over.is_set():
                started = time.monotonic()
                verified = gateway.get("/api/v1/auth/verify", headers=bearer)
                took.append(time.monotonic() - started)
                assert verified.status_code == 200, verified.text
                time.sleep(0.02)
        return took

    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=user_service.url, timeout=30, limits=limits) as flood:
        in_flight = asyncio.Semaphore(50)

        async def log_in(n: int) -> httpx.Response:
            async with in_flight:
                body = {"email": accounts[n % len(accounts)], "password": PASSWORD}
                return await flood.post("/api/v1/auth/login", json=body)

        checking = asyncio.create_task(asyncio.to_thread(check_tokens))
        await asyncio.to_thread(flooding.wait, 30)
        try:
            answers = await asyncio.gather(*(log_in(n) for n in range(200)))
        finally:
            over.set()
        checks = await checking
        metrics = (await flood.get("/metrics")).text
    codes = [a.status_code for a in answers]
    assert set(codes) <= {200, 503}, codes
    assert codes.count(200) >= 1, codes
    assert codes.count(503) >= 1, codes  # the flood was more than the checks admitted
    for answer in answers:
        if answer.status_code == 503:
            assert answer.headers["content-type"].startswith("application/json")
            assert answer.json()["error"]["code"] == "password_checks_busy"
            assert int(answer.headers["retry-after"]) >= 1
    assert len(checks) >= 10, checks  # the checks ran during the flood
    # Far below the gateway's 5 s timeout, generous for a loaded 2-core machine.
    assert max(checks) < 1.0, sorted(checks)[-5:]
    refused = re.search(r"^refapp_password_checks_refused_total (\S+)$", metrics, re.MULTILINE)
    assert refused is not None, metrics
    assert float(refused.group(1)) >= codes.count(503)
    assert "refapp_password_checks_waiting 0.0" in metrics
    # Once the flood is over, every account signs in.
    for email in accounts:
        assert _login(http, email=email).status_code == 200


def test_verify_answers_are_cached_for_most_of_a_minute_each_its_own(http: httpx.Client) -> None:
    tag = uuid.uuid4().hex[:6]
    assert _signup(http, f"spread_{tag}", f"spread.{tag}@example.com").status_code == 201
    token = _login(http, username=f"spread_{tag}").json()["accessToken"]
    seconds = []
    for _ in range(40):
        verified = http.get("/api/v1/auth/verify", headers={"Authorization": f"Bearer {token}"})
        assert verified.status_code == 200
        seconds.append(int(verified.headers["X-Accel-Expires"]))
    # VERIFY_CACHE_SECONDS is 60: 30 to 60, not 60 for every answer cached at once.
    assert 30 <= min(seconds) <= max(seconds) <= 60
    assert len(set(seconds)) > 3
