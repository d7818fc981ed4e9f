"""Alembic environment of commercekit's own tables (run by `commercekit.sql.migrate`)."""

from commercekit.sql import VERSION_TABLE, Base, run_migrations

run_migrations(Base.metadata, VERSION_TABLE, runner="commercekit.sql.migrate()")
