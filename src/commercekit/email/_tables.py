"""The email service's own table: recipients remembered from ``user.created``."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from commercekit.errors import MissingExtraError

try:
    from sqlalchemy import String, func
    from sqlalchemy.orm import Mapped, mapped_column

    from commercekit import sql
    from commercekit.sql import Base
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtraError("postgres", __name__) from exc

if TYPE_CHECKING:
    from commercekit.email.recipients import Recipient


class RecipientRow(Base):
    """A user's address, as the email service knows it."""

    __tablename__ = "commercekit_email_recipients"

    user_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


def upsert(dialect: str, recipient: Recipient) -> Any:
    """INSERT ... ON CONFLICT (user_id) DO UPDATE for `recipient`."""
    return sql.upsert(
        dialect,
        RecipientRow,
        {"user_id": recipient.user_id, "email": recipient.email, "name": recipient.name},
        index_elements=["user_id"],
        set_={"email": recipient.email, "name": recipient.name, "updated_at": func.now()},
    )
