"""The SQLAlchemy models of the outbox and the processed-event store."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Index, Integer, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from commercekit.sql import Base

__all__ = ["OutboxMessage", "ProcessedEvent"]


class OutboxMessage(Base):
    """One event waiting in (or already relayed from) the outbox, in insertion order."""

    __tablename__ = "commercekit_outbox"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    event_id: Mapped[str] = mapped_column(String(200), unique=True)
    event_type: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text())
    trace_id: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    """The trace id of the event's ``traceparent``: finds the events of one request's trace."""
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    sent_at: Mapped[dt.datetime | None] = mapped_column(default=None)

    __table_args__ = (
        Index(
            "ix_commercekit_outbox_unsent",
            "id",
            postgresql_where=text("sent_at IS NULL"),
            sqlite_where=text("sent_at IS NULL"),
        ),
        Index("ix_commercekit_outbox_key_id", "key", "id"),
    )


class ProcessedEvent(Base):
    """An event a consumer has handled; the primary key makes a second effect impossible."""

    __tablename__ = "commercekit_processed_events"

    consumer: Mapped[str] = mapped_column(String(200), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    processed_at: Mapped[dt.datetime] = mapped_column(server_default=func.now(), index=True)
