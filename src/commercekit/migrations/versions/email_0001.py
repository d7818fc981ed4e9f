"""Email recipients: commercekit_email_recipients.

Revision ID: email_0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "email_0001"
down_revision = None
branch_labels = ("email",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "commercekit_email_recipients",
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_commercekit_email_recipients")),
    )


def downgrade() -> None:
    op.drop_table("commercekit_email_recipients")
