"""Refresh-token families on SQLAlchemy (PostgreSQL in production, SQLite embedded).

Apply the ``auth`` migration branch first (`commercekit.sql.migrate` applies
every branch). Rotation is one transaction with a conditional ``UPDATE ...
WHERE used_at IS NULL``: of two concurrent refreshes with the same token,
the database lets exactly one through.
"""

from __future__ import annotations

import datetime as dt

from commercekit.auth.refresh import RefreshFamily, StoredRefreshToken
from commercekit.errors import MissingExtraError

try:
    from sqlalchemy import ForeignKey, String, delete, insert, or_, select, update
    from sqlalchemy.ext.asyncio import AsyncEngine
    from sqlalchemy.orm import Mapped, mapped_column

    from commercekit.sql import Base, utc
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtraError("postgres", __name__) from exc

__all__ = ["RefreshFamilyRow", "RefreshTokenRow", "SqlRefreshTokenStore"]


class RefreshFamilyRow(Base):
    """One sign-in session (a chain of rotated refresh tokens)."""

    __tablename__ = "commercekit_refresh_families"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(200), index=True)
    role: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(32))


class RefreshTokenRow(Base):
    """The SHA-256 of one refresh token; the token itself is never stored."""

    __tablename__ = "commercekit_refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    family_id: Mapped[str] = mapped_column(
        String(64),
        ForeignKey(
            "commercekit_refresh_families.id",
            name="fk_commercekit_refresh_tokens_family",
            ondelete="CASCADE",
        ),
        index=True,
    )
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]


def _aware(moment: dt.datetime | None) -> dt.datetime | None:
    return None if moment is None else utc(moment)


class SqlRefreshTokenStore:
    """A `RefreshTokenStore` in the ``commercekit_refresh_*`` tables.

    Args:
        engine: a SQLAlchemy async engine (asyncpg on PostgreSQL, aiosqlite
            for the embedded mode).
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create(self, family: RefreshFamily, token: StoredRefreshToken) -> None:
        """Store a new family and its first token, in one transaction."""
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(RefreshFamilyRow).values(
                    id=family.id,
                    user_id=family.user_id,
                    role=family.role,
                    created_at=family.created_at,
                    expires_at=family.expires_at,
                    revoked_at=family.revoked_at,
                    revoked_reason=family.revoked_reason,
                )
            )
            await conn.execute(insert(RefreshTokenRow).values(**_token_values(token)))

    async def find(self, token_hash: str) -> tuple[StoredRefreshToken, RefreshFamily] | None:
        """The token with this hash and its family, or None."""
        token_row, family_row = RefreshTokenRow, RefreshFamilyRow
        query = (
            select(
                token_row.token_hash,
                token_row.family_id,
                token_row.created_at,
                token_row.expires_at,
                token_row.used_at,
                family_row.user_id,
                family_row.role,
                family_row.created_at.label("family_created_at"),
                family_row.expires_at.label("family_expires_at"),
                family_row.revoked_at,
                family_row.revoked_reason,
            )
            .join(RefreshFamilyRow, RefreshFamilyRow.id == RefreshTokenRow.family_id)
            .where(RefreshTokenRow.token_hash == token_hash)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        token = StoredRefreshToken(
            token_hash=row.token_hash,
            family_id=row.family_id,
            created_at=utc(row.created_at),
            expires_at=utc(row.expires_at),
            used_at=_aware(row.used_at),
        )
        family = RefreshFamily(
            id=row.family_id,
            user_id=row.user_id,
            role=row.role,
            created_at=utc(row.family_created_at),
            expires_at=utc(row.family_expires_at),
            revoked_at=_aware(row.revoked_at),
            revoked_reason=row.revoked_reason,
        )
        return token, family

    async def rotate(self, used_hash: str, successor: StoredRefreshToken, now: dt.datetime) -> bool:
        """Spend `used_hash` and insert `successor` in one transaction, if still allowed.

        The ``WHERE used_at IS NULL`` of the update is re-checked by the
        database after any concurrent update of the row commits, so only one
        of several concurrent rotations updates a row; the others get 0 rows
        and change nothing.
        """
        live_families = select(RefreshFamilyRow.id).where(RefreshFamilyRow.revoked_at.is_(None))
        async with self.engine.begin() as conn:
            spent = await conn.execute(
                update(RefreshTokenRow)
                .where(
                    RefreshTokenRow.token_hash == used_hash,
                    RefreshTokenRow.used_at.is_(None),
                    RefreshTokenRow.family_id.in_(live_families),
                )
                .values(used_at=now)
            )
            if spent.rowcount != 1:
                return False
            await conn.execute(insert(RefreshTokenRow).values(**_token_values(successor)))
            return True

    async def revoke_family(self, family_id: str, reason: str, now: dt.datetime) -> bool:
        """Revoke a family; False if it was revoked already (or is unknown)."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(RefreshFamilyRow)
                .where(RefreshFamilyRow.id == family_id, RefreshFamilyRow.revoked_at.is_(None))
                .values(revoked_at=now, revoked_reason=str(reason))
            )
            return bool(result.rowcount)

    async def revoke_user(self, user_id: str, reason: str, now: dt.datetime) -> int:
        """Revoke every live family of a user; how many were revoked."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(RefreshFamilyRow)
                .where(RefreshFamilyRow.user_id == user_id, RefreshFamilyRow.revoked_at.is_(None))
                .values(revoked_at=now, revoked_reason=str(reason))
            )
            return int(result.rowcount)

    async def purge(self, before: dt.datetime) -> int:
        """Delete families (and their tokens) that expired or were revoked before `before`."""
        ended = or_(RefreshFamilyRow.expires_at < before, RefreshFamilyRow.revoked_at < before)
        async with self.engine.begin() as conn:
            # Tokens first: SQLite enforces ON DELETE CASCADE only with its foreign_keys pragma.
            await conn.execute(
                delete(RefreshTokenRow).where(
                    RefreshTokenRow.family_id.in_(select(RefreshFamilyRow.id).where(ended))
                )
            )
            result = await conn.execute(delete(RefreshFamilyRow).where(ended))
            return int(result.rowcount)


def _token_values(token: StoredRefreshToken) -> dict[str, object]:
    return {
        "token_hash": token.token_hash,
        "family_id": token.family_id,
        "created_at": token.created_at,
        "expires_at": token.expires_at,
        "used_at": token.used_at,
    }
