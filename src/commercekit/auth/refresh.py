"""Opaque refresh tokens in families: rotation on every use, reuse revokes the family.

```python
refresh = RefreshTokens(SqlRefreshTokenStore(engine))
issued = await refresh.issue("user-42", role="user")  # at login: a new family
rotated = await refresh.rotate(issued.token)  # at refresh: the old token is spent
await refresh.revoke(rotated.token)  # at logout: the whole family ends
```

A refresh token is 256 random bits; the store keeps only its SHA-256, so a
leaked table signs nobody in. Each login starts a *family*; every refresh
spends the presented token and issues its successor in the same family. A
spent token that comes back means two parties hold the family (a thief and
the user, or two racing clients): the whole family is revoked, the newest
token too, and `RefreshTokenReused` is raised, so everyone signs in again.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import NoReturn, Protocol, runtime_checkable

from commercekit.errors import (
    ConfigurationError,
    InvalidRefreshToken,
    RefreshTokenExpired,
    RefreshTokenReused,
)

__all__ = [
    "InMemoryRefreshTokenStore",
    "IssuedRefreshToken",
    "RefreshFamily",
    "RefreshTokenStore",
    "RefreshTokens",
    "RevokeReason",
    "StoredRefreshToken",
    "hash_refresh_token",
]

_TOKEN_BYTES = 32
_MAX_TOKEN_LENGTH = 200


class RevokeReason(enum.StrEnum):
    """Why a family was revoked."""

    REUSE = "reuse"
    """A spent token was presented again."""
    LOGOUT = "logout"
    """The user signed out of this session."""
    LOGOUT_ALL = "logout_all"
    """Every session of the user was ended (password change, sign out everywhere)."""


@dataclass(frozen=True, slots=True)
class RefreshFamily:
    """One sign-in session: the chain of refresh tokens rotated from one login."""

    id: str
    user_id: str
    role: str
    created_at: dt.datetime
    expires_at: dt.datetime
    """The session's absolute end: no token of the family outlives it."""
    revoked_at: dt.datetime | None = None
    revoked_reason: str | None = None


@dataclass(frozen=True, slots=True)
class StoredRefreshToken:
    """A refresh token as stored: its hash, never the token itself."""

    token_hash: str
    family_id: str
    created_at: dt.datetime
    expires_at: dt.datetime
    used_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class IssuedRefreshToken:
    """A new refresh token, to hand to the client (in an httpOnly cookie)."""

    token: str
    family_id: str
    user_id: str
    role: str
    expires_at: dt.datetime


def hash_refresh_token(token: str) -> str:
    """The hex SHA-256 of a refresh token, as the store keeps it."""
    return hashlib.sha256(token.encode()).hexdigest()


@runtime_checkable
class RefreshTokenStore(Protocol):
    """Where refresh-token families and token hashes live.

    `rotate` is the one operation that must be atomic: of several concurrent
    calls with the same token, exactly one may return True.
    """

    async def create(self, family: RefreshFamily, token: StoredRefreshToken) -> None:
        """Store a new family and its first token."""
        ...

    async def find(self, token_hash: str) -> tuple[StoredRefreshToken, RefreshFamily] | None:
        """The token with this hash and its family, or None."""
        ...

    async def rotate(self, used_hash: str, successor: StoredRefreshToken, now: dt.datetime) -> bool:
        """Mark `used_hash` spent and store `successor`, atomically.

        Only if the token is unspent and its family not revoked; otherwise
        change nothing and return False.
        """
        ...

    async def revoke_family(self, family_id: str, reason: str, now: dt.datetime) -> bool:
        """Revoke a family; False if it was revoked already (or is unknown)."""
        ...

    async def revoke_user(self, user_id: str, reason: str, now: dt.datetime) -> int:
        """Revoke every live family of a user; how many were revoked."""
        ...

    async def purge(self, before: dt.datetime) -> int:
        """Delete families (and their tokens) that ended before `before`; how many."""
        ...


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class RefreshTokens:
    """Issues, rotates and revokes refresh tokens on a `RefreshTokenStore`.

    Args:
        store: where families and token hashes are kept.
        ttl: lifetime of one refresh token (the session's idle timeout).
        max_lifetime: absolute lifetime of a family, however often it is refreshed.
        clock: the current time (tests move it).
    """

    def __init__(
        self,
        store: RefreshTokenStore,
        *,
        ttl: dt.timedelta = dt.timedelta(days=14),
        max_lifetime: dt.timedelta = dt.timedelta(days=90),
        clock: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        if ttl <= dt.timedelta(0) or max_lifetime < ttl:
            raise ConfigurationError("refresh ttl must be positive and at most max_lifetime")
        self.store = store
        self.ttl = ttl
        self.max_lifetime = max_lifetime
        self._clock = clock

    async def issue(self, user_id: str, *, role: str = "user") -> IssuedRefreshToken:
        """Start a new family (a login) and return its first token."""
        if not user_id:
            raise ConfigurationError("user_id must not be empty")
        now = self._clock()
        family = RefreshFamily(
            id=uuid.uuid4().hex,
            user_id=user_id,
            role=role,
            created_at=now,
            expires_at=now + self.max_lifetime,
        )
        token, stored = self._new_token(family, now)
        await self.store.create(family, stored)
        return self._issued(token, family, stored)

    async def rotate(self, token: str) -> IssuedRefreshToken:
        """Spend `token` and return its successor in the same family.

        Raises:
            RefreshTokenReused: the token was spent already (or by a concurrent
                call): its whole family is now revoked.
            RefreshTokenExpired: the token or its family is past its lifetime.
            InvalidRefreshToken: the token is unknown, or its family was revoked.
        """
        token_hash = self._hash(token)
        found = await self.store.find(token_hash)
        if found is None:
            raise InvalidRefreshToken("unknown refresh token")
        stored, family = found
        now = self._clock()
        if stored.used_at is not None:
            await self._reused(family.id, now)
        if family.revoked_at is not None:
            raise InvalidRefreshToken("refresh token revoked")
        if now >= stored.expires_at or now >= family.expires_at:
            raise RefreshTokenExpired("refresh token expired")
        new_token, successor = self._new_token(family, now)
        if not await self.store.rotate(token_hash, successor, now):
            # A concurrent call spent it first, or the family was revoked meanwhile.
            again = await self.store.find(token_hash)
            if again is not None and again[0].used_at is None:
                raise InvalidRefreshToken("refresh token revoked")
            await self._reused(family.id, now)
        return self._issued(new_token, family, successor)

    async def revoke(self, token: str) -> bool:
        """Log out: revoke the family of `token`; False if unknown or revoked already."""
        try:
            token_hash = self._hash(token)
        except InvalidRefreshToken:
            return False
        found = await self.store.find(token_hash)
        if found is None:
            return False
        return await self.store.revoke_family(found[1].id, RevokeReason.LOGOUT, self._clock())

    async def revoke_user(self, user_id: str) -> int:
        """Log out everywhere: revoke every live family of `user_id`; how many."""
        return await self.store.revoke_user(user_id, RevokeReason.LOGOUT_ALL, self._clock())

    async def purge(self, grace: dt.timedelta = dt.timedelta(days=1)) -> int:
        """Delete families that ended more than `grace` ago; how many were deleted."""
        return await self.store.purge(self._clock() - grace)

    async def _reused(self, family_id: str, now: dt.datetime) -> NoReturn:
        await self.store.revoke_family(family_id, RevokeReason.REUSE, now)
        raise RefreshTokenReused(family_id)

    def _new_token(self, family: RefreshFamily, now: dt.datetime) -> tuple[str, StoredRefreshToken]:
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        stored = StoredRefreshToken(
            token_hash=hash_refresh_token(token),
            family_id=family.id,
            created_at=now,
            expires_at=min(now + self.ttl, family.expires_at),
        )
        return token, stored

    @staticmethod
    def _hash(token: str) -> str:
        if not token or len(token) > _MAX_TOKEN_LENGTH:
            raise InvalidRefreshToken("not a refresh token")
        return hash_refresh_token(token)

    @staticmethod
    def _issued(
        token: str, family: RefreshFamily, stored: StoredRefreshToken
    ) -> IssuedRefreshToken:
        return IssuedRefreshToken(
            token=token,
            family_id=family.id,
            user_id=family.user_id,
            role=family.role,
            expires_at=stored.expires_at,
        )


class InMemoryRefreshTokenStore:
    """A `RefreshTokenStore` in dictionaries: tests and the single-process demo."""

    def __init__(self) -> None:
        self.families: dict[str, RefreshFamily] = {}
        self.tokens: dict[str, StoredRefreshToken] = {}

    async def create(self, family: RefreshFamily, token: StoredRefreshToken) -> None:
        """Store a new family and its first token."""
        self.families[family.id] = family
        self.tokens[token.token_hash] = token

    async def find(self, token_hash: str) -> tuple[StoredRefreshToken, RefreshFamily] | None:
        """The token with this hash and its family, or None."""
        stored = self.tokens.get(token_hash)
        if stored is None:
            return None
        return stored, self.families[stored.family_id]

    async def rotate(self, used_hash: str, successor: StoredRefreshToken, now: dt.datetime) -> bool:
        """Mark `used_hash` spent and store `successor` (no await in between: atomic)."""
        stored = self.tokens.get(used_hash)
        if stored is None or stored.used_at is not None:
            return False
        if self.families[stored.family_id].revoked_at is not None:
            return False
        self.tokens[used_hash] = replace(stored, used_at=now)
        self.tokens[successor.token_hash] = successor
        return True

    async def revoke_family(self, family_id: str, reason: str, now: dt.datetime) -> bool:
        """Revoke a family; False if it was revoked already (or is unknown)."""
        family = self.families.get(family_id)
        if family is None or family.revoked_at is not None:
            return False
        self.families[family_id] = replace(family, revoked_at=now, revoked_reason=str(reason))
        return True

    async def revoke_user(self, user_id: str, reason: str, now: dt.datetime) -> int:
        """Revoke every live family of a user; how many were revoked."""
        live = [f.id for f in self.families.values() if f.user_id == user_id and not f.revoked_at]
        for family_id in live:
            await self.revoke_family(family_id, reason, now)
        return len(live)

    async def purge(self, before: dt.datetime) -> int:
        """Delete families (and their tokens) that ended before `before`; how many."""
        gone = {
            f.id
            for f in self.families.values()
            if f.expires_at < before or (f.revoked_at is not None and f.revoked_at < before)
        }
        self.tokens = {h: t for h, t in self.tokens.items() if t.family_id not in gone}
        for family_id in gone:
            del self.families[family_id]
        return len(gone)
