"""The ``users`` table (migrations ``users_0001``, ``users_0002``)."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import DateTime, Index, String, Text, Uuid, func
from sqlalchemy.orm import Mapped, mapped_column, validates

from commercekit.auth import normalize_identity
from reference_app.common.db import AppBase

__all__ = ["User"]


class User(AppBase):
    """A user; username and email are each unique as `normalize_identity` keys.

    ``username`` and ``email`` are shown as the user typed them; setting
    either sets its key (``username_key``, ``email_key``), which the unique
    indexes, logins and role matching compare. The database never folds
    case itself: its ``lower()`` and Python's disagree.
    """

    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True, default=uuid.uuid4)
    username: Mapped[str] = mapped_column(String(50))
    email: Mapped[str] = mapped_column(String(320))
    username_key: Mapped[str] = mapped_column(Text())
    email_key: Mapped[str] = mapped_column(Text())
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(32), server_default="user")
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    __table_args__ = (
        Index("uq_users_username_key", username_key, unique=True),
        Index("uq_users_email_key", email_key, unique=True),
    )

    @validates("username")
    def _key_username(self, _: str, username: str) -> str:
        self.username_key = normalize_identity(username)
        return username

    @validates("email")
    def _key_email(self, _: str, email: str) -> str:
        self.email_key = normalize_identity(email)
        return email
