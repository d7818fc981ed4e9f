"""The services' caller comes from the gateway's two headers, read from the request."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from reference_app.common import AdminUser, CurrentUser
from reference_app.common.errors import install_error_handlers

from commercekit.auth import USER_ID_HEADER, USER_ROLE_HEADER


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/me")
    async def me(user: CurrentUser) -> dict[str, str]:
        return {"user": user.user_id, "role": user.role}

    @app.get("/admin")
    async def admin(user: AdminUser) -> dict[str, str]:
        return {"user": user.user_id}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        yield client


async def test_the_caller_is_the_gateways_two_headers(client: httpx.AsyncClient) -> None:
    answer = await client.get("/me", headers={USER_ID_HEADER: "u-1", USER_ROLE_HEADER: "user"})
    assert answer.status_code == 200
    assert answer.json() == {"user": "u-1", "role": "user"}
    # Header names are case-insensitive, as HTTP says.
    answer = await client.get("/me", headers={"x-user-id": "u-2", "x-user-role": "admin"})
    assert answer.json() == {"user": "u-2", "role": "admin"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {USER_ID_HEADER: "u-1"},
        {USER_ROLE_HEADER: "user"},
        {USER_ID_HEADER: "", USER_ROLE_HEADER: "user"},
        {USER_ID_HEADER: "u" * 201, USER_ROLE_HEADER: "user"},
        {USER_ID_HEADER: "u-1", USER_ROLE_HEADER: "r" * 201},
    ],
)
async def test_without_a_whole_identity_the_answer_is_401(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    answer = await client.get("/me", headers=headers)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"


async def test_only_the_admin_role_passes_admin_routes(client: httpx.AsyncClient) -> None:
    user = await client.get("/admin", headers={USER_ID_HEADER: "u-1", USER_ROLE_HEADER: "user"})
    assert user.status_code == 403
    assert user.json()["error"]["code"] == "forbidden"
    admin = await client.get("/admin", headers={USER_ID_HEADER: "a-1", USER_ROLE_HEADER: "admin"})
    assert admin.status_code == 200


async def test_the_identity_headers_are_not_in_the_api_schema(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    for path in ("/me", "/admin"):
        assert "parameters" not in schema["paths"][path]["get"]
