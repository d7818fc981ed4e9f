"""Events: the trace id of each outbox row, to find the events of one request's trace.

Revision ID: events_0002
Revises: events_0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "events_0002"
down_revision = "events_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("commercekit_outbox") as table:  # SQLite too
        table.add_column(sa.Column("trace_id", sa.String(32), nullable=True))
    op.create_index(op.f("ix_commercekit_outbox_trace_id"), "commercekit_outbox", ["trace_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_commercekit_outbox_trace_id"), table_name="commercekit_outbox")
    with op.batch_alter_table("commercekit_outbox") as table:
        table.drop_column("trace_id")
