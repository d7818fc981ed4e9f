"""Alembic environment of the reference app's tables (run by `reference_app.common.db.migrate`)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

import reference_app.user.models  # noqa: F401 - registers the tables on AppBase
from reference_app.common.db import VERSION_TABLE, AppBase


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=AppBase.metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("the reference app's migrations run through reference_app.common.db")
_run(connection)
