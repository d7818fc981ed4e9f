"""Alembic environment of commercekit's own tables (run by `commercekit.sql.migrate`)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from commercekit.sql import VERSION_TABLE, Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("commercekit migrations run through commercekit.sql.migrate()")
_run(connection)
