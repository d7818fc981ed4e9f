"""Auth: refresh-token families and the hashes of their tokens.

Revision ID: auth_0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "auth_0001"
down_revision = None
branch_labels = ("auth",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "commercekit_refresh_families",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_reason", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_commercekit_refresh_families")),
    )
    op.create_index(
        op.f("ix_commercekit_refresh_families_user_id"),
        "commercekit_refresh_families",
        ["user_id"],
    )
    op.create_table(
        "commercekit_refresh_tokens",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("family_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_commercekit_refresh_tokens")),
        sa.ForeignKeyConstraint(
            ["family_id"],
            ["commercekit_refresh_families.id"],
            name="fk_commercekit_refresh_tokens_family",
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        op.f("ix_commercekit_refresh_tokens_family_id"),
        "commercekit_refresh_tokens",
        ["family_id"],
    )


def downgrade() -> None:
    op.drop_table("commercekit_refresh_tokens")
    op.drop_table("commercekit_refresh_families")
