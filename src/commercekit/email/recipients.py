"""Who to mail: a user's address and name, remembered from ``user.created`` events.

Payment and refund events name a user id, not an address. The email
service keeps its own directory, filled from the ``user.created`` events it
consumes (so it never calls the user service), and looks recipients up in
it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["InMemoryRecipients", "Recipient", "RecipientDirectory", "SqlRecipients"]


@dataclass(frozen=True, slots=True)
class Recipient:
    """A user's email address and display name."""

    user_id: str
    email: str
    name: str


@runtime_checkable
class RecipientDirectory(Protocol):
    """Where the notifier remembers and finds recipients."""

    async def remember(self, recipient: Recipient) -> None:
        """Store (or update) a recipient."""
        ...

    async def lookup(self, user_id: str) -> Recipient | None:
        """The recipient for `user_id`, or None if unknown."""
        ...


class InMemoryRecipients:
    """A `RecipientDirectory` in a dict (tests, the embedded mode)."""

    def __init__(self) -> None:
        self._by_id: dict[str, Recipient] = {}

    async def remember(self, recipient: Recipient) -> None:
        """See `RecipientDirectory.remember`."""
        self._by_id[recipient.user_id] = recipient

    async def lookup(self, user_id: str) -> Recipient | None:
        """See `RecipientDirectory.lookup`."""
        return self._by_id.get(user_id)


class SqlRecipients:
    """A `RecipientDirectory` in the ``commercekit_email_recipients`` table.

    Needs ``commercekit[postgres]`` and the migrations (`commercekit.sql.migrate`).
    """

    def __init__(self, engine: AsyncEngine) -> None:
        from commercekit.email._tables import RecipientRow, upsert  # noqa: PLC0415

        self.engine = engine
        self._row = RecipientRow
        self._upsert = upsert

    async def remember(self, recipient: Recipient) -> None:
        """See `RecipientDirectory.remember`."""
        async with self.engine.begin() as conn:
            await conn.execute(self._upsert(conn.dialect.name, recipient))

    async def lookup(self, user_id: str) -> Recipient | None:
        """See `RecipientDirectory.lookup`."""
        from sqlalchemy import select  # noqa: PLC0415

        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(self._row).where(self._row.user_id == user_id))
            ).first()
        return Recipient(row.user_id, row.email, row.name) if row is not None else None
