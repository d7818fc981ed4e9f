"""Users are unique by their normalised identity, not by PostgreSQL's ``lower()``.

Revision ID: users_0002
Revises: users_0001
Create Date: 2026-12-01

PostgreSQL's ``lower()`` (C locale) folds ASCII only, Python's folds far
more: an address and its twin with a KELVIN SIGN for its ``k`` were two rows
to the index and one to the role check, and ``Élise`` could not sign in as
``élise``. Each user now has ``username_key`` and ``email_key``, computed by
`commercekit.auth.normalize_identity` (here for the rows already there, by
the service for new ones), each under a unique index.

Twins that the old index let in (two rows with one key) keep their rows: the
oldest keeps the identity, each younger twin's key is set to one no login can
produce (``DUPLICATE:<id>:<key>``: normalize_identity never outputs ASCII
capitals), so it can no longer sign in, and its id is logged.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

from commercekit.auth.identity import normalize_identity

revision = "users_0002"
down_revision = "users_0001"
branch_labels = None
depends_on = None

log = logging.getLogger("reference_app.migrations")

_USERS = sa.table(
    "users",
    sa.column("id", sa.Uuid()),
    sa.column("username", sa.String()),
    sa.column("email", sa.String()),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("username_key", sa.Text()),
    sa.column("email_key", sa.Text()),
)


def _backfill(connection: sa.Connection) -> None:
    rows = connection.execute(
        sa.select(_USERS.c.id, _USERS.c.username, _USERS.c.email).order_by(
            _USERS.c.created_at, _USERS.c.id
        )
    ).all()
    taken: dict[str, set[str]] = {"username_key": set(), "email_key": set()}
    updates = []
    for row in rows:
        keys = {
            "username_key": normalize_identity(row.username),
            "email_key": normalize_identity(row.email),
        }
        for column, key in keys.items():
            if key in taken[column]:
                log.warning(
                    "user %s is a twin of an older user (%s): it cannot sign in", row.id, column
                )
                keys[column] = f"DUPLICATE:{row.id}:{key}"
            taken[column].add(keys[column])
        updates.append({"user_id": row.id, **keys})
    if updates:
        connection.execute(
            _USERS.update()
            .where(_USERS.c.id == sa.bindparam("user_id"))
            .values(username_key=sa.bindparam("username_key"), email_key=sa.bindparam("email_key")),
            updates,
        )


def upgrade() -> None:
    """Add the identity keys, fill them, and make them the unique indexes."""
    op.add_column("users", sa.Column("username_key", sa.Text(), nullable=True))
    op.add_column("users", sa.Column("email_key", sa.Text(), nullable=True))
    _backfill(op.get_bind())
    op.drop_index("uq_users_username_lower", table_name="users")
    op.drop_index("uq_users_email_lower", table_name="users")
    with op.batch_alter_table("users") as batch:  # SQLite (the demo) rebuilds the table
        batch.alter_column("username_key", existing_type=sa.Text(), nullable=False)
        batch.alter_column("email_key", existing_type=sa.Text(), nullable=False)
    op.create_index("uq_users_username_key", "users", ["username_key"], unique=True)
    op.create_index("uq_users_email_key", "users", ["email_key"], unique=True)


def downgrade() -> None:
    """Back to ``lower()`` indexes (fails if two rows differ only in ASCII case)."""
    op.drop_index("uq_users_email_key", table_name="users")
    op.drop_index("uq_users_username_key", table_name="users")
    op.create_index("uq_users_username_lower", "users", [sa.text("lower(username)")], unique=True)
    op.create_index("uq_users_email_lower", "users", [sa.text("lower(email)")], unique=True)
    with op.batch_alter_table("users") as batch:
        batch.drop_column("email_key")
        batch.drop_column("username_key")
