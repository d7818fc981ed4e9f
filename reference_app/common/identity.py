"""Who is calling, as the gateway says: FastAPI dependencies over its identity headers.

nginx verifies the access token (``auth_request`` to the user service) and
sets ``X-User-Id`` / ``X-User-Role`` from the verify answer, overwriting any
value a client sent. The services trust those two headers and nothing else,
so they must only be reachable through the gateway.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

from commercekit.auth import USER_ID_HEADER, USER_ROLE_HEADER, Principal
from commercekit.reservations import acting_as
from reference_app.common.errors import ApiError

__all__ = [
    "IDEMPOTENCY_HEADER",
    "IDEMPOTENCY_KEY_PATTERN",
    "MAX_IDEMPOTENCY_KEY",
    "AdminUser",
    "CurrentUser",
    "admin_user",
    "current_user",
    "scoped_key",
    "valid_idempotency_key",
]

_MAX_ID = 200

IDEMPOTENCY_HEADER = "Idempotency-Key"
"""The header that makes a reserve or a payment safe to repeat."""

MAX_IDEMPOTENCY_KEY = 200
"""The longest ``Idempotency-Key`` a reserve or a payment accepts, in characters."""

IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]+$"
"""What an ``Idempotency-Key`` may hold: printable ASCII, no space."""

_KEY = re.compile(rf"[\x21-\x7e]{{1,{MAX_IDEMPOTENCY_KEY}}}")


def valid_idempotency_key(key: str) -> bool:
    """Whether `key` is an ``Idempotency-Key`` the routes' header declarations accept."""
    return _KEY.fullmatch(key) is not None


def scoped_key(user_id: str, key: str) -> str:
    """A client's ``Idempotency-Key`` scoped to the caller, as one fixed-length digest.

    Another user's key never names this caller's reservation or payment, and
    a key of any length the header allows (`MAX_IDEMPOTENCY_KEY`) fits the
    stores' limits.
    """
    return "idem:" + hashlib.sha256(f"{user_id}\0{key}".encode()).hexdigest()


async def current_user(request: Request) -> Principal:
    """The verified caller; 401 when the gateway did not authenticate the request.

    The two headers are read from the request itself, not declared as FastAPI
    ``Header`` parameters: FastAPI inspects each declared parameter's type on
    every request, which made this check a tenth of a reserve's CPU time.
    They are the gateway's, never part of the public API, so the OpenAPI
    schema loses nothing.
    """
    headers = request.headers
    user_id = headers.get(USER_ID_HEADER)
    role = headers.get(USER_ROLE_HEADER)
    if not user_id or not role or len(user_id) > _MAX_ID or len(role) > _MAX_ID:
        raise ApiError(401, "authentication required", code="unauthorized")
    return Principal(user_id=user_id, role=role)


async def admin_user(
    user: Annotated[Principal, Depends(current_user)],
) -> AsyncIterator[Principal]:
    """The verified caller if an admin; 403 otherwise.

    The stock journal names the admin (``admin:<id>``) as the actor of what
    the request changes.
    """
    if user.role != "admin":
        raise ApiError(403, "admin role required", code="forbidden")
    with acting_as(f"admin:{user.user_id}"):
        yield user


CurrentUser = Annotated[Principal, Depends(current_user)]
"""The caller the gateway authenticated (401 without one)."""

AdminUser = Annotated[Principal, Depends(admin_user)]
"""The caller, who must have the ``admin`` role (403 otherwise)."""
