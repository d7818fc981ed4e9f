"""Reservations: moves of sold units back on sale (a cancellation, a return), once each.

Revision ID: reservations_0004
Revises: reservations_0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "reservations_0004"
down_revision = "reservations_0003"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "commercekit_stock_moves",
        sa.Column("id", sa.String(140), nullable=False),
        sa.Column("lines", _JSON, nullable=False),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_commercekit_stock_moves")),
    )
    op.create_index(
        op.f("ix_commercekit_stock_moves_applied"), "commercekit_stock_moves", ["applied"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_commercekit_stock_moves_applied"), "commercekit_stock_moves")
    op.drop_table("commercekit_stock_moves")
