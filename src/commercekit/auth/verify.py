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

import datetime as dt
import random
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
    """Who made the request, as proven by their access token.

    Attributes:
        user_id: the token's subject.
        role: its ``role`` claim.
        expires_at: when the token stops being valid (its ``exp``); None
            where the identity did not come from a token (the gateway's headers).
    """

    user_id: str
    role: str
    expires_at: dt.datetime | None = None

    def headers(self) -> dict[str, str]:
        """The identity headers the gateway passes to the services."""
        return {USER_ID_HEADER: self.user_id, USER_ROLE_HEADER: self.role}

    def cacheable_for(
        self, limit: float, *, spread: float = 0.0, now: dt.datetime | None = None
    ) -> int:
        """Whole seconds a gateway may reuse this answer: at most `limit`, never past ``exp``.

        One second short of the expiry, so a cache's whole-second clock
        cannot serve the answer once the token has expired; 0 when the token
        expires within a second or has no known expiry.

        With a `spread` (0 to 1), a random share of `limit` up to that
        fraction is taken off, so the answers cached in one burst (a sale's
        opening minute, a gateway's empty cache) do not all expire, and all
        come back to the verifier, in the same second.

        Raises:
            ValueError: a `spread` outside 0 to 1.
        """
        if not 0.0 <= spread <= 1.0:
            raise ValueError(f"spread must be between 0 and 1, not {spread}")
        if self.expires_at is None:
            return 0
        left = (self.expires_at - (now or dt.datetime.now(dt.UTC))).total_seconds() - 1
        if spread:
            limit *= 1.0 - spread * random.random()  # noqa: S311 (spreading load, not a secret)
        return max(0, int(min(limit, left)))


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
    return Principal(user_id=claims.user_id, role=claims.role, expires_at=claims.expires_at)
