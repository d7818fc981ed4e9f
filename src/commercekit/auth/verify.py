"""The gateway's check: an ``Authorization`` header in, a user id and role out.

```python
principal = verify(request.headers.get("Authorization"), tokens)
return Response(headers=principal.headers())  # X-User-Id, X-User-Role for nginx
```

nginx's ``auth_request`` calls an endpoint that does exactly this: a 2xx
answer lets the request through with the identity headers it returns
(the gateway overwrites any a client sent), a 401 stops it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from commercekit.errors import InvalidToken

if TYPE_CHECKING:
    from commercekit.auth.tokens import AccessTokens

__all__ = ["USER_ID_HEADER", "USER_ROLE_HEADER", "Principal", "bearer_token", "verify"]

USER_ID_HEADER = "X-User-Id"
"""The header that carries the verified user id downstream of the gateway."""

USER_ROLE_HEADER = "X-User-Role"
"""The header that carries the verified role downstream of the gateway."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made the request, as proven by their access token."""

    user_id: str
    role: str

    def headers(self) -> dict[str, str]:
        """The identity headers the gateway passes to the services."""
        return {USER_ID_HEADER: self.user_id, USER_ROLE_HEADER: self.role}


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header value.

    Raises:
        InvalidToken: the header is missing, empty, or another scheme.
    """
    if not authorization:
        raise InvalidToken("no access token")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise InvalidToken("expected an Authorization: Bearer <token> header")
    return token


def verify(authorization: str | None, tokens: AccessTokens) -> Principal:
    """Verify the access token of an ``Authorization`` header value.

    Args:
        authorization: the header value (``Bearer <token>``), or None if absent.
        tokens: the `AccessTokens` configured like the issuer's.

    Returns:
        The verified user id and role.

    Raises:
        TokenExpired: the token is genuine but expired (the client should refresh).
        InvalidToken: no token, or one that does not verify.
    """
    claims = tokens.decode(bearer_token(authorization))
    return Principal(user_id=claims.user_id, role=claims.role)
