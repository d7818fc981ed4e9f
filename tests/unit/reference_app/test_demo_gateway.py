"""The demo's in-process gateway does nginx's identity work; the demo app is the services' own."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI
from reference_app.demo.gateway import Access, InProcessGateway, route_access
from reference_app.demo.main import WALK_ADMIN_EMAIL, create_app, demo_settings
from reference_app.inventory.routes import router as inventory_router
from reference_app.payment.routes import router as payment_router
from reference_app.settings import DemoSettings
from reference_app.user.routes import router as user_router
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from commercekit.auth import AccessTokens, JWTSettings

SETTINGS = JWTSettings(environment="development")


@pytest.mark.parametrize(
    ("path", "access"),
    [
        ("/api/v1/auth/signup", Access.PUBLIC),
        ("/api/v1/auth/login", Access.PUBLIC),
        ("/api/v1/auth/refresh", Access.PUBLIC),
        ("/api/v1/auth/logout", Access.PUBLIC),
        ("/api/v1/products", Access.PUBLIC),
        ("/api/v1/products/0b7c1a52-8d6e-4f59-9a51-3f2c1e0d4a11", Access.PUBLIC),
        ("/health", Access.PUBLIC),
        ("/api/v1/auth/verify", Access.HIDDEN),
        ("/api/v1/auth/me", Access.PROTECTED),
        ("/api/v1/auth/signup/", Access.PROTECTED),
        ("/api/v1/auth/loginx", Access.PROTECTED),
        ("/api/v1/inventory", Access.PROTECTED),
        ("/api/v1/inventory/reserve", Access.PROTECTED),
        ("/api/v1/inventory/reservations/r1/cancel", Access.PROTECTED),
        ("/api/v1/payment", Access.PROTECTED),
        ("/api/v1/payment/r1", Access.PROTECTED),
        ("/api/v1/anything-else", Access.PROTECTED),
    ],
)
def test_route_access_follows_nginx_locations(path: str, access: Access) -> None:
    assert route_access(path) is access


async def _echo(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "user": request.headers.getlist("x-user-id"),
            "role": request.headers.getlist("x-user-role"),
        }
    )


def _client(tokens: AccessTokens) -> httpx.AsyncClient:
    app = Starlette(
        routes=[Route("/{path:path}", _echo, methods=["GET", "POST"])],
        middleware=[Middleware(InProcessGateway)],
    )
    app.state.user = SimpleNamespace(tokens=tokens)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://demo")


SPOOF = {"X-User-Id": "someone-else", "X-User-Role": "admin"}


async def test_public_routes_lose_client_identity_headers() -> None:
    async with _client(AccessTokens(SETTINGS)) as client:
        response = await client.get("/api/v1/products", headers=SPOOF)
    assert response.status_code == 200
    assert response.json() == {"user": [], "role": []}


@pytest.mark.parametrize(
    "headers",
    [
        SPOOF,
        {**SPOOF, "Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ],
)
async def test_protected_routes_without_a_valid_token_get_nginx_401(
    headers: dict[str, str],
) -> None:
    async with _client(AccessTokens(SETTINGS)) as client:
        response = await client.post("/api/v1/inventory/reserve", headers=headers)
    assert response.status_code == 401
    assert response.json() == {
        "error": {"code": "unauthorized", "message": "a valid access token is required"}
    }
    assert response.headers["www-authenticate"] == "Bearer"


async def test_a_valid_token_sets_the_verified_identity_over_the_clients() -> None:
    tokens = AccessTokens(SETTINGS)
    token = tokens.issue("user-42", role="user")
    async with _client(tokens) as client:
        response = await client.get(
            "/api/v1/payment/r1",
            headers=[
                ("Authorization", f"Bearer {token}"),
                ("X-User-Id", "someone-else"),
                ("x-user-id", "and-another"),
                ("X-User-Role", "admin"),
            ],
        )
    assert response.status_code == 200
    assert response.json() == {"user": ["user-42"], "role": ["user"]}


async def test_an_expired_token_is_refused() -> None:
    issued = AccessTokens(SETTINGS)
    token = issued.issue(
        "user-42", role="admin", now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    )
    async with _client(issued) as client:
        response = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_a_token_signed_with_another_secret_is_refused() -> None:
    other = AccessTokens(
        JWTSettings(
            environment="development", secret="another-secret-that-is-long-enough-for-hs256"
        )
    )
    token = other.issue("user-42", role="admin")
    async with _client(AccessTokens(SETTINGS)) as client:
        response = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


async def test_verify_is_not_reachable_from_outside() -> None:
    tokens = AccessTokens(SETTINGS)
    token = tokens.issue("user-42", role="user")
    async with _client(tokens) as client:
        response = await client.get(
            "/api/v1/auth/verify", headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


# ------------------------------------------------------------------ the demo app


def _operations(app: FastAPI) -> dict[tuple[str, str], object]:
    paths = app.openapi()["paths"]
    return {(path, method): op for path, ops in paths.items() for method, op in ops.items()}


def test_the_demo_mounts_the_services_own_routes() -> None:
    demo = create_app(demo_settings(DemoSettings()))
    mounted = _operations(demo)
    for router in (user_router, inventory_router, payment_router):
        service = FastAPI()
        service.include_router(router)
        own = _operations(service)
        assert own
        # Same paths, methods, operation ids (the endpoint functions), parameters, schemas.
        assert {key: mounted.get(key) for key in own} == own
    # The gateway runs inside the request middleware (request ids on its 401s).
    assert demo.user_middleware[-1].cls is InProcessGateway


def test_demo_settings_make_the_walks_admin_an_admin_and_keep_the_environments() -> None:
    settings = demo_settings(
        DemoSettings(
            environment="production",
            jwt_access_secret="an-unguessable-production-secret-0123456789",
            admin_emails="A@b.io",
        )
    )
    assert settings.development
    assert settings.role_for(WALK_ADMIN_EMAIL) == "admin"
    assert settings.role_for("a@b.io") == "admin"
    assert settings.role_for("shopper@example.com") == "user"


def test_without_a_jwt_secret_each_demo_signs_with_its_own() -> None:
    first, second = demo_settings(DemoSettings()), demo_settings(DemoSettings())
    assert first.jwt_access_secret is not None
    assert second.jwt_access_secret is not None
    assert first.jwt_access_secret.get_secret_value() != second.jwt_access_secret.get_secret_value()
