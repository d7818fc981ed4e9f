"""`RefreshTokenStoreContract`: the refresh-token behaviour every `RefreshTokenStore` must give.

Subclass it once per store and provide the `store` fixture: an empty store,
or one isolated from other tests (the tests use fresh user ids, so a shared
database is fine)::

    class TestMyRefreshTokens(RefreshTokenStoreContract):
        @pytest.fixture
        def store(self, engine):
            return SqlRefreshTokenStore(engine)

The suite drives the store through `RefreshTokens` with a clock it moves by
hand: rotation, reuse detection (the whole family revoked), expiry, the
family's absolute lifetime, logout, logout everywhere, purge, hashes only,
and concurrent rotations of one token (exactly one wins).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest

from commercekit.auth import (
    IssuedRefreshToken,
    RefreshTokens,
    RefreshTokenStore,
    RevokeReason,
    hash_refresh_token,
)
from commercekit.errors import InvalidRefreshToken, RefreshTokenExpired, RefreshTokenReused

__all__ = ["Clock", "RefreshTokenStoreContract"]


class Clock:
    """A clock the test moves by hand; call it for the current time."""

    def __init__(self) -> None:
        self.now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        """The current (test) time."""
        return self.now

    def advance(self, delta: dt.timedelta) -> None:
        """Move the clock forward by `delta`."""
        self.now += delta


class RefreshTokenStoreContract:
    """The behaviour every `RefreshTokenStore` must show. Subclass and provide `store`."""

    @pytest.fixture
    def store(self) -> RefreshTokenStore:
        """Abstract: an empty (or isolated) store (override in the subclass)."""
        raise NotImplementedError("provide a store fixture")

    @pytest.fixture
    def clock(self) -> Clock:
        """The clock of the test's `RefreshTokens`, moved by hand."""
        return Clock()

    @pytest.fixture
    def refresh(self, store: RefreshTokenStore, clock: Clock) -> RefreshTokens:
        """`RefreshTokens` on the store: tokens live a day, families three."""
        return RefreshTokens(
            store, ttl=dt.timedelta(days=1), max_lifetime=dt.timedelta(days=3), clock=clock
        )

    @pytest.fixture
    def user(self) -> str:
        """A user id no other test uses."""
        return f"user-{uuid.uuid4().hex[:8]}"

    async def _revoked_reason(self, store: RefreshTokenStore, token: str) -> str | None:
        found = await store.find(hash_refresh_token(token))
        assert found is not None
        return found[1].revoked_reason

    async def test_rotation_issues_a_new_token_in_the_same_family(
        self, refresh: RefreshTokens, user: str
    ) -> None:
        """Each rotation spends the token and issues a new one of the same family."""
        first = await refresh.issue(user, role="admin")
        second = await refresh.rotate(first.token)
        third = await refresh.rotate(second.token)
        assert len({first.token, second.token, third.token}) == 3
        assert {first.family_id, second.family_id, third.family_id} == {first.family_id}
        assert (third.user_id, third.role) == (user, "admin")
        assert len(first.token) >= 43  # 256 random bits

    async def test_a_rotated_token_cannot_be_used_again(
        self, refresh: RefreshTokens, user: str
    ) -> None:
        """A spent token presented again is `RefreshTokenReused`."""
        first = await refresh.issue(user)
        await refresh.rotate(first.token)
        with pytest.raises(RefreshTokenReused) as caught:
            await refresh.rotate(first.token)
        assert caught.value.family_id == first.family_id

    async def test_reuse_revokes_the_family_and_the_newest_token_stops_working(
        self, refresh: RefreshTokens, store: RefreshTokenStore, user: str
    ) -> None:
        """Reuse revokes the whole family, its newest token too, and no other family."""
        stolen = await refresh.issue(user)
        middle = await refresh.rotate(stolen.token)
        newest = await refresh.rotate(middle.token)
        other_session = await refresh.issue(user)

        with pytest.raises(RefreshTokenReused):
            await refresh.rotate(stolen.token)  # the thief replays the old token
        with pytest.raises(InvalidRefreshToken) as caught:
            await refresh.rotate(newest.token)  # the legitimate newest one is dead too
        assert type(caught.value) is InvalidRefreshToken
        assert await self._revoked_reason(store, newest.token) == RevokeReason.REUSE
        # another family of the same user is untouched
        assert (await refresh.rotate(other_session.token)).user_id == user

    async def test_an_older_generation_replayed_also_revokes(
        self, refresh: RefreshTokens, user: str
    ) -> None:
        """Any spent generation replayed is reuse, however often it comes back."""
        tokens: list[IssuedRefreshToken] = [await refresh.issue(user)]
        for _ in range(3):
            tokens.append(await refresh.rotate(tokens[-1].token))
        with pytest.raises(RefreshTokenReused):
            await refresh.rotate(tokens[1].token)
        with pytest.raises(InvalidRefreshToken):
            await refresh.rotate(tokens[-1].token)
        with pytest.raises(RefreshTokenReused):  # still reuse, however often it comes back
            await refresh.rotate(tokens[1].token)

    async def test_an_unknown_token_is_invalid(self, refresh: RefreshTokens) -> None:
        """Unknown, oversized and empty tokens are `InvalidRefreshToken`."""
        for token in ("nope", "x" * 500, ""):
            with pytest.raises(InvalidRefreshToken) as caught:
                await refresh.rotate(token)
            assert type(caught.value) is InvalidRefreshToken

    async def test_a_token_past_its_ttl_is_expired(
        self, refresh: RefreshTokens, clock: Clock, user: str
    ) -> None:
        """A token unused for its ttl is `RefreshTokenExpired`; each rotation slides it."""
        first = await refresh.issue(user)
        clock.advance(dt.timedelta(hours=23))
        second = await refresh.rotate(first.token)  # sliding: a new day from now
        clock.advance(dt.timedelta(hours=23))
        third = await refresh.rotate(second.token)
        clock.advance(dt.timedelta(days=1))
        with pytest.raises(RefreshTokenExpired):
            await refresh.rotate(third.token)

    async def test_no_family_outlives_its_max_lifetime(
        self, refresh: RefreshTokens, clock: Clock, user: str
    ) -> None:
        """However often it is rotated, a family ends at its `max_lifetime`."""
        current = await refresh.issue(user)
        for _ in range(5):  # 2.5 days of refreshing twice a day
            clock.advance(dt.timedelta(hours=12))
            current = await refresh.rotate(current.token)
        assert current.expires_at == clock.now + dt.timedelta(hours=12)  # capped at 3 days
        clock.advance(dt.timedelta(hours=12))
        with pytest.raises(RefreshTokenExpired):
            await refresh.rotate(current.token)

    async def test_logout_revokes_the_family(
        self, refresh: RefreshTokens, store: RefreshTokenStore, user: str
    ) -> None:
        """`revoke` ends the family, once, with the reason ``logout``."""
        first = await refresh.issue(user)
        second = await refresh.rotate(first.token)
        assert await refresh.revoke(second.token)
        assert not await refresh.revoke(second.token)  # idempotent
        assert not await refresh.revoke("unknown")
        with pytest.raises(InvalidRefreshToken) as caught:
            await refresh.rotate(second.token)
        assert type(caught.value) is InvalidRefreshToken
        assert await self._revoked_reason(store, second.token) == RevokeReason.LOGOUT

    async def test_logout_everywhere_revokes_every_family_of_the_user(
        self, refresh: RefreshTokens, user: str
    ) -> None:
        """`revoke_user` ends every family of the user and no one else's."""
        sessions = [await refresh.issue(user) for _ in range(3)]
        bystander = await refresh.issue(f"{user}-other")
        assert await refresh.revoke_user(user) == 3
        assert await refresh.revoke_user(user) == 0
        for session in sessions:
            with pytest.raises(InvalidRefreshToken):
                await refresh.rotate(session.token)
        assert (await refresh.rotate(bystander.token)).family_id == bystander.family_id

    async def test_only_the_hash_is_stored(
        self, refresh: RefreshTokens, store: RefreshTokenStore, user: str
    ) -> None:
        """The store finds a token by its hash only, never by the token."""
        issued = await refresh.issue(user)
        assert await store.find(issued.token) is None
        found = await store.find(hash_refresh_token(issued.token))
        assert found is not None
        assert found[0].token_hash == hash_refresh_token(issued.token) != issued.token

    async def test_purge_deletes_ended_families_only(
        self, refresh: RefreshTokens, clock: Clock, user: str
    ) -> None:
        """`purge` deletes families that ended before the grace, and keeps live ones."""
        ended = await refresh.issue(user)
        await refresh.revoke(ended.token)
        clock.advance(dt.timedelta(days=2))
        live = await refresh.issue(user)
        assert await refresh.purge(grace=dt.timedelta(days=1)) >= 1
        with pytest.raises(InvalidRefreshToken):
            await refresh.rotate(ended.token)
        assert (await refresh.rotate(live.token)).family_id == live.family_id

    async def test_concurrent_refreshes_with_one_token_let_exactly_one_through(
        self, refresh: RefreshTokens, user: str
    ) -> None:
        """Of concurrent rotations of one token exactly one wins; the rest are reuse."""
        issued = await refresh.issue(user)
        results = await asyncio.gather(
            *(refresh.rotate(issued.token) for _ in range(8)), return_exceptions=True
        )
        winners = [r for r in results if isinstance(r, IssuedRefreshToken)]
        losers = [r for r in results if not isinstance(r, IssuedRefreshToken)]
        assert len(winners) == 1
        assert all(isinstance(r, RefreshTokenReused) for r in losers), losers
        with pytest.raises(InvalidRefreshToken):  # the race counted as reuse: family revoked
            await refresh.rotate(winners[0].token)
