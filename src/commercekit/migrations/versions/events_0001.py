"""Events: the transactional outbox and the processed-event store.

Revision ID: events_0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "events_0001"
down_revision = None
branch_labels = ("events",)
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_UNSENT = sa.text("sent_at IS NULL")


def upgrade() -> None:
    op.create_table(
        "commercekit_outbox",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("key", sa.String(500), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_commercekit_outbox")),
        sa.UniqueConstraint("event_id", name=op.f("uq_commercekit_outbox_event_id")),
    )
    op.create_index(
        "ix_commercekit_outbox_unsent",
        "commercekit_outbox",
        ["id"],
        postgresql_where=_UNSENT,
        sqlite_where=_UNSENT,
    )
    op.create_index("ix_commercekit_outbox_key_id", "commercekit_outbox", ["key", "id"])
    op.create_table(
        "commercekit_processed_events",
        sa.Column("consumer", sa.String(200), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column(
            "processed_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint(
            "consumer", "event_id", name=op.f("pk_commercekit_processed_events")
        ),
    )
    op.create_index(
        op.f("ix_commercekit_processed_events_processed_at"),
        "commercekit_processed_events",
        ["processed_at"],
    )


def downgrade() -> None:
    op.drop_table("commercekit_processed_events")
    op.drop_table("commercekit_outbox")
