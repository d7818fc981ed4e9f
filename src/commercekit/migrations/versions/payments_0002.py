"""Payments: when a payment without an outcome was last re-driven, and how often.

Revision ID: payments_0002
Revises: payments_0001
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "payments_0002"
down_revision = "payments_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("commercekit_payments") as table:  # SQLite too
        table.add_column(sa.Column("redriven_at", sa.DateTime(timezone=True), nullable=True))
        table.add_column(
            sa.Column("redrives", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("commercekit_payments") as table:
        table.drop_column("redrives")
        table.drop_column("redriven_at")
