"""Reservation ledger: commercekit_stock and commercekit_reservations.

Revision ID: reservations_0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "reservations_0001"
down_revision = None
branch_labels = ("reservations",)
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "commercekit_stock",
        sa.Column("sku", sa.String(200), nullable=False),
        sa.Column("added", sa.BigInteger(), nullable=False),
        sa.Column("sold", sa.BigInteger(), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("sku", name=op.f("pk_commercekit_stock")),
    )
    op.create_table(
        "commercekit_reservations",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("lines", _JSON, nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_commercekit_reservations")),
    )
    op.create_index(
        op.f("ix_commercekit_reservations_owner"), "commercekit_reservations", ["owner"]
    )
    op.create_index(
        "ix_commercekit_reservations_status_expires",
        "commercekit_reservations",
        ["status", "expires_at"],
    )


def downgrade() -> None:
    op.drop_table("commercekit_reservations")
    op.drop_table("commercekit_stock")
