"""Signup, login, refresh rotation, reuse detection, identity headers: through nginx."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import httpx
from reference_app.launch import SERVICES, LocalStack

from commercekit.testing.servers import PostgresServer
from tests.e2e.conftest import ADMIN_EMAIL
from tests.e2e.gateway import assert_json_error, refresh_cookie

PASSWORD = "correct horse battery staple"


def new_user() -> dict[str, str]:
    name = f"u{uuid.uuid4().hex[:12]}"
    return {"username": name, "email": f"{name}@example.com", "password": PASSWORD}


def post_with_cookie(client: httpx.Client, path: str, token: str) -> httpx.Response:
    return client.post(path, headers={"Cookie": f"refreshToken={token}"})


def signup_and_login(client: httpx.Client) -> tuple[dict[str, str], httpx.Response]:
    user = new_user()
    assert client.post("/api/v1/auth/signup", json=user).status_code == 201
    login = client.post(
        "/api/v1/auth/login", json={"email": user["email"], "password": user["password"]}
    )
    assert login.status_code == 200, login.text
    return user, login


def test_signup_login_refresh_rotation_and_reuse(client: httpx.Client) -> None:
    user = new_user()
    signup = client.post("/api/v1/auth/signup", json=user)
    assert signup.status_code == 201
    assert signup.json()["message"]

    login = client.post(
        "/api/v1/auth/login", json={"username": user["username"].upper(), "password": PASSWORD}
    )
    assert login.status_code == 200
    body = login.json()
    assert body["accessToken"]
    assert body["user"]["username"] == user["username"]
    assert body["user"]["email"] == user["email"]
    uuid.UUID(body["user"]["id"])
    set_cookie = login.headers["set-cookie"].lower()
    for attribute in ("httponly", "secure", "samesite=strict", "path=/api/v1/auth"):
        assert attribute in set_cookie
    first = refresh_cookie(login)

    rotated = post_with_cookie(client, "/api/v1/auth/refresh", first)
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["accessToken"]
    second = refresh_cookie(rotated)
    assert second != first

    replay = post_with_cookie(client, "/api/v1/auth/refresh", first)
    assert assert_json_error(replay, 403)["code"] == "refresh_token_reused"
    # The whole family is revoked: the newest token fails too.
    assert_json_error(post_with_cookie(client, "/api/v1/auth/refresh", second), 401)


def test_refresh_without_or_with_garbage_cookie_is_401(client: httpx.Client) -> None:
    assert_json_error(client.post("/api/v1/auth/refresh"), 401)
    assert_json_error(post_with_cookie(client, "/api/v1/auth/refresh", "garbage"), 401)


def test_logout_revokes_the_session(client: httpx.Client) -> None:
    _, login = signup_and_login(client)
    token = refresh_cookie(login)
    logout = post_with_cookie(client, "/api/v1/auth/logout", token)
    assert logout.status_code == 204
    assert "refreshToken=" in logout.headers["set-cookie"]
    assert_json_error(post_with_cookie(client, "/api/v1/auth/refresh", token), 401)


def test_wrong_password_and_unknown_user_get_the_same_401(client: httpx.Client) -> None:
    user, _ = signup_and_login(client)
    wrong = client.post("/api/v1/auth/login", json={"email": user["email"], "password": "nope!"})
    unknown = client.post(
        "/api/v1/auth/login", json={"email": "nobody@example.com", "password": "nope!"}
    )
    assert assert_json_error(wrong, 401) == assert_json_error(unknown, 401)
    assert "set-cookie" not in wrong.headers


def test_duplicate_signup_is_409(client: httpx.Client) -> None:
    user, _ = signup_and_login(client)
    same_email = {**new_user(), "email": user["email"].upper()}
    same_name = {**new_user(), "username": user["username"].upper()}
    assert assert_json_error(client.post("/api/v1/auth/signup", json=same_email), 409)
    assert assert_json_error(client.post("/api/v1/auth/signup", json=same_name), 409)


def test_forged_identity_headers_are_ignored(client: httpx.Client) -> None:
    user, login = signup_and_login(client)
    token = login.json()["accessToken"]
    forged = str(uuid.uuid4())
    me = client.get(
        "/api/v1/auth/me",
        headers={
            "Authorization": f"Bearer {token}",
            "X-User-Id": forged,
            "X-User-Role": "admin",
            "X-Internal-Caller": "inventory",
        },
    )
    assert me.status_code == 200, me.text
    assert me.json() == {
        "id": login.json()["user"]["id"],
        "role": "user",
        "username": user["username"],
        "email": user["email"],
    }


def test_authenticated_route_without_valid_token_is_401_at_the_gateway(
    client: httpx.Client,
) -> None:
    forged = {"X-User-Id": str(uuid.uuid4()), "X-User-Role": "admin"}
    assert_json_error(client.get("/api/v1/auth/me", headers=forged), 401)
    bad = {**forged, "Authorization": "Bearer not-a-jwt"}
    assert_json_error(client.get("/api/v1/auth/me", headers=bad), 401)
    # nginx alone calls verify; from outside it does not exist.
    assert_json_error(client.get("/api/v1/auth/verify", headers=bad), 404)


def test_admin_emails_get_the_admin_role(client: httpx.Client) -> None:
    user = {**new_user(), "email": ADMIN_EMAIL}
    assert client.post("/api/v1/auth/signup", json=user).status_code == 201
    login = client.post("/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": PASSWORD})
    token = login.json()["accessToken"]
    me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["role"] == "admin"


def test_login_is_rate_limited_with_a_json_429(client: httpx.Client) -> None:
    statuses = []
    for _ in range(25):
        response = client.post("/api/v1/auth/login", json={})
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert_json_error(response, 429)
            assert response.headers["retry-after"] == "1"
            break
    assert 429 in statuses, statuses
    assert 422 in statuses  # the first ones reached the service


def test_bad_input_is_a_json_4xx_never_a_5xx(client: httpx.Client) -> None:
    malformed = client.post(
        "/api/v1/auth/signup",
        content=b'{"username": "x",',
        headers={"Content-Type": "application/json"},
    )
    assert assert_json_error(malformed, 400)["code"] == "malformed_json"
    wrong_types = client.post(
        "/api/v1/auth/signup", json={"username": 12, "email": ["a"], "password": None}
    )
    error = assert_json_error(wrong_types, 422)
    assert "username" in error["message"]
    assert "password" in error["message"]
    not_an_object = client.post("/api/v1/auth/login", json=[1, 2, 3])
    assert_json_error(not_an_object, 422)
    no_identifier = client.post("/api/v1/auth/login", json={"password": "x"})
    assert "email or a username" in assert_json_error(no_identifier, 422)["message"]
    form = client.post("/api/v1/auth/signup", data={"username": "abc"})
    assert 400 <= form.status_code < 500


def test_request_id_is_echoed_or_generated(client: httpx.Client) -> None:
    given = client.post("/api/v1/auth/login", json={}, headers={"X-Request-Id": "trace-me-42"})
    assert given.headers["x-request-id"] == "trace-me-42"
    generated = client.post("/api/v1/auth/login", json={})
    assert len(generated.headers["x-request-id"]) >= 16
    assert generated.headers.get_list("x-request-id") == [generated.headers["x-request-id"]]


def test_a_service_that_is_down_answers_a_json_503_with_retry_after(
    tmp_path: Path, stack: LocalStack
) -> None:
    user_only = [spec for spec in SERVICES if spec.name == "user"]
    with (
        LocalStack(tmp_path, env=stack.env, services=user_only) as partial,
        httpx.Client(base_url=partial.gateway_url, timeout=10) as client,
    ):
        products = client.get("/api/v1/products")
        assert_json_error(products, 503, "service_unavailable")
        assert products.headers["retry-after"] == "1"
        _, login = signup_and_login(client)
        auth = {"Authorization": f"Bearer {login.json()['accessToken']}"}
        down = client.post("/api/v1/inventory", json={}, headers=auth)
        assert_json_error(down, 503, "service_unavailable")
        assert down.headers["retry-after"] == "1"
        assert_json_error(client.post("/api/v1/inventory", json={}), 401)
        assert_json_error(client.get("/nowhere"), 404)


def test_probes_and_metrics(stack: LocalStack, client: httpx.Client) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    (user_service,) = stack.urls("user")
    with httpx.Client(base_url=user_service) as direct:
        assert direct.get("/health").json() == {"status": "ok"}
        ready = direct.get("/ready")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"postgres": "ok"}
        client.post("/api/v1/auth/login", json={})
        metrics = direct.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert (
        'http_request_duration_seconds_count{method="POST",route="/api/v1/auth/login",status="422"}'
        in metrics.text
    )


async def test_signup_writes_user_created_to_the_outbox(
    client: httpx.Client, postgres_server: PostgresServer
) -> None:
    _, login = signup_and_login(client)
    user_id = login.json()["user"]["id"]
    conn = await asyncpg.connect(postgres_server.url)
    try:
        rows = await conn.fetch(
            "SELECT event_type, body FROM commercekit_outbox WHERE key = $1", user_id
        )
    finally:
        await conn.close()
    assert [row["event_type"] for row in rows] == ["user.created"]
    assert user_id in rows[0]["body"]


def test_a_non_ascii_capital_signs_in_in_any_case_and_its_twins_are_409(
    client: httpx.Client,
) -> None:
    tag = uuid.uuid4().hex[:8]
    user = {"username": f"Élise_{tag}", "email": f"Élise.{tag}@example.com", "password": PASSWORD}
    assert client.post("/api/v1/auth/signup", json=user).status_code == 201
    for identifier in (
        {"email": f"élise.{tag}@example.com"},
        {"email": f"ÉLISE.{tag}@EXAMPLE.COM"},
        {"username": f"élise_{tag}"},
    ):
        login = client.post("/api/v1/auth/login", json={**identifier, "password": PASSWORD})
        assert login.status_code == 200, (identifier, login.text)
        shown = login.json()["user"]
        assert (shown["username"], shown["email"]) == (user["username"], user["email"])
    for twin in (
        {**new_user(), "email": f"élise.{tag}@example.com"},
        {**new_user(), "email": f"E\u0301lise.{tag}@example.com"},  # É decomposed
        {**new_user(), "username": f"élise_{tag}"},
    ):
        assert assert_json_error(client.post("/api/v1/auth/signup", json=twin), 409)
