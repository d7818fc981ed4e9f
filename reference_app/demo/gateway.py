"""The gateway's work done in-process, for ``commercekit demo`` (nginx does it in the full stack).

What `InProcessGateway` does is what ``reference_app/gateway/nginx.conf`` does:

- the identity headers a client sends (``X-User-Id``, ``X-User-Role``) are
  dropped from every request: the services trust only the gateway's;
- on the routes nginx guards with ``auth_request`` (`route_access` says which),
  the ``Authorization: Bearer`` token is checked with the user service's
  verify logic (`commercekit.auth.verify` with ``app.state.user.tokens``, as
  ``GET /api/v1/auth/verify`` does) and the verified identity is passed on as
  those two headers; a request without a valid token gets nginx's 401 JSON;
- ``/api/v1/auth/verify`` is not reachable from outside (404), as behind nginx.

Unlike nginx, the demo also serves ``/docs``, ``/redoc`` (and their assets
under ``/docs-assets/``), ``/openapi.json``, ``/ready`` and ``/metrics`` on
its one port: it is a local tool.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

from commercekit.auth import USER_ID_HEADER, USER_ROLE_HEADER, verify
from commercekit.errors import InvalidToken, TokenExpired
from reference_app.common.errors import error_response

if TYPE_CHECKING:
    from commercekit.auth import AccessTokens

__all__ = ["IDENTITY_HEADERS", "Access", "InProcessGateway", "route_access"]

IDENTITY_HEADERS = frozenset({USER_ID_HEADER.lower().encode(), USER_ROLE_HEADER.lower().encode()})
"""The request headers only the gateway may set (lower-case, as ASGI carries them)."""

_PUBLIC_AUTH = re.compile(r"^/api/v1/auth/(signup|login|refresh|logout)$")
_PROTECTED_PREFIXES = ("/api/v1/auth/", "/api/v1/inventory", "/api/v1/payment", "/api/v1/")
_UNAUTHORIZED = "a valid access token is required"  # nginx's @unauthorized message


class Access(Enum):
    """How the gateway treats a path."""

    PUBLIC = "public"
    """Passed on without an identity (nginx's public locations, and the demo's extras)."""
    PROTECTED = "protected"
    """Needs a valid access token; passed on with the verified identity."""
    HIDDEN = "hidden"
    """Answered 404 by the gateway itself (``/api/v1/auth/verify``)."""


def route_access(path: str) -> Access:
    """How nginx's locations treat `path` (a request path, without the query string)."""
    if path == "/api/v1/auth/verify":
        return Access.HIDDEN
    if _PUBLIC_AUTH.match(path) or path.startswith("/api/v1/products"):
        return Access.PUBLIC
    if path.startswith(_PROTECTED_PREFIXES):
        return Access.PROTECTED
    return Access.PUBLIC


def _app_tokens(scope: Scope) -> AccessTokens:
    """The user service's `AccessTokens`, wired by its ``wire`` in ``app.state.user``."""
    tokens: AccessTokens = scope["app"].state.user.tokens
    return tokens


class InProcessGateway:
    """Pure ASGI middleware doing nginx's identity work; see the module docstring.

    Add it inside the app (``app.user_middleware``), so ``scope["app"]`` is
    the FastAPI app whose ``state.user`` the user service's ``wire`` filled.

    Args:
        app: the ASGI app to wrap.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI call."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in IDENTITY_HEADERS]
        access = route_access(scope["path"])
        if scope["type"] == "http" and access is Access.HIDDEN:
            await error_response(404, "no such route", code="not_found")(scope, receive, send)
            return
        if scope["type"] == "http" and access is Access.PROTECTED:
            authorization = next(
                (v.decode("latin-1") for k, v in headers if k.lower() == b"authorization"), None
            )
            try:
                principal = verify(authorization, _app_tokens(scope))
            except TokenExpired:
                challenge = 'Bearer error="invalid_token", error_description="token expired"'
                response = error_response(
                    401, _UNAUTHORIZED, code="unauthorized", headers={"WWW-Authenticate": challenge}
                )
                await response(scope, receive, send)
                return
            except InvalidToken:
                response = error_response(
                    401, _UNAUTHORIZED, code="unauthorized", headers={"WWW-Authenticate": "Bearer"}
                )
                await response(scope, receive, send)
                return
            headers.extend(
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in principal.headers().items()
            )
        await self.app({**scope, "headers": headers}, receive, send)
