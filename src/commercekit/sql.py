"""The SQLAlchemy base of every table commercekit defines, and its migrations.

Every feature that keeps rows (the reservation ledger, the outbox, processed
events, refresh tokens...) declares its models on `Base`, and ships an
Alembic revision in ``commercekit/migrations/versions`` as its own branch
(``branch_labels``), so features are independent and ``upgrade heads``
applies them all. commercekit's tables are prefixed ``commercekit_`` and its
migration history lives in ``commercekit_alembic_version``, so they sit in a
shop's own database beside its own tables and its own Alembic history.

```python
from commercekit.sql import migrate

await migrate("postgresql+asyncpg://user@host/db")
```
"""

from __future__ import annotations

import datetime as dt
from importlib import resources
from typing import Any

from commercekit.errors import MissingExtraError

try:
    from alembic import command, context
    from alembic.config import Config
    from sqlalchemy import JSON, DateTime, MetaData
    from sqlalchemy.dialects.postgresql import JSONB
    from sqlalchemy.engine import Connection
    from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
    from sqlalchemy.orm import DeclarativeBase
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtraError("postgres", __name__) from exc

__all__ = [
    "TABLE_PREFIX",
    "VERSION_TABLE",
    "Base",
    "alembic_config",
    "migrate",
    "run_migrations",
]

TABLE_PREFIX = "commercekit_"
"""Prefix of every table commercekit creates."""

VERSION_TABLE = "commercekit_alembic_version"
"""Where Alembic records which of commercekit's revisions are applied."""

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of commercekit's models (deterministic constraint names).

    ``dict[str, Any]`` columns are JSONB on PostgreSQL and JSON elsewhere;
    ``datetime`` columns are timezone-aware.
    """

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        dict[str, Any]: JSON().with_variant(JSONB(), "postgresql"),
        dt.datetime: DateTime(timezone=True),
    }


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic `Config` for commercekit's migrations, bound to `connection`."""
    config = Config()
    config.set_main_option("script_location", str(resources.files("commercekit") / "migrations"))
    config.set_main_option("version_table", VERSION_TABLE)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


async def migrate(target: str | AsyncEngine, revision: str = "heads") -> None:
    """Apply commercekit's migrations (all branches by default) to a database.

    Args:
        target: a SQLAlchemy async URL or engine.
        revision: the Alembic revision to upgrade to.
    """
    engine = create_async_engine(target) if isinstance(target, str) else target
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade, revision)
    finally:
        if isinstance(target, str):
            await engine.dispose()


def run_migrations(metadata: MetaData, version_table: str, *, runner: str) -> None:
    """The body of an Alembic ``env.py`` run on a connection its caller passes.

    The caller puts the connection in ``config.attributes["connection"]``, as
    `migrate` does, so the migrations run inside its transaction. Use it in
    your own ``env.py`` to migrate your tables the same way.

    Args:
        metadata: the models' metadata (for autogenerate).
        version_table: where this tree records its applied revisions.
        runner: what to call instead, named in the error when run another way.
    """
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(f"these migrations run through {runner}")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=version_table,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def _upgrade(connection: Connection, revision: str) -> None:
    command.upgrade(alembic_config(connection), revision)
