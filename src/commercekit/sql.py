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

The idempotent writes, on PostgreSQL or SQLite alike, are `insert_or_ignore`
(``INSERT ... ON CONFLICT DO NOTHING``) and `upsert` (``ON CONFLICT DO UPDATE``):

```python
from commercekit.sql import insert_or_ignore

statement = insert_or_ignore(session.get_bind().dialect.name, RefundRow, values)
inserted = (await session.execute(statement.returning(RefundRow.id))).first()
```
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from commercekit.errors import ConfigurationError, MissingExtraError

try:
    from alembic import command, context
    from alembic.config import Config
    from sqlalchemy import JSON, DateTime, Insert, MetaData, Table
    from sqlalchemy.dialects import postgresql, sqlite
    from sqlalchemy.dialects.postgresql import JSONB
    from sqlalchemy.engine import Connection
    from sqlalchemy.ext.asyncio import (
        AsyncConnection,
        AsyncEngine,
        AsyncSession,
        create_async_engine,
    )
    from sqlalchemy.orm import DeclarativeBase
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtraError("postgres", __name__) from exc

__all__ = [
    "ON_CONFLICT_DIALECTS",
    "TABLE_PREFIX",
    "VERSION_TABLE",
    "Base",
    "alembic_config",
    "dialect_of",
    "insert_or_ignore",
    "migrate",
    "read_snapshot",
    "run_migrations",
    "upsert",
    "utc",
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


ON_CONFLICT_DIALECTS = frozenset({"postgresql", "sqlite"})
"""The dialects `insert_or_ignore` and `upsert` write ``ON CONFLICT`` for."""

Values = Mapping[str, Any] | Sequence[Mapping[str, Any]]
"""The values of one row (a mapping of column names), or of several (a sequence of them)."""


def _insert(
    dialect: str, table: type[Base] | Table, values: Values
) -> postgresql.Insert | sqlite.Insert:
    if dialect == "postgresql":
        return postgresql.insert(table).values(values)
    if dialect == "sqlite":
        return sqlite.insert(table).values(values)
    raise ConfigurationError(
        f"insert-or-ignore and upsert need PostgreSQL or SQLite, not {dialect!r}"
    )


def insert_or_ignore(
    dialect: str,
    table: type[Base] | Table,
    values: Values,
    *,
    index_elements: Sequence[str] | None = None,
) -> Insert:
    """``INSERT ... ON CONFLICT DO NOTHING``: the rows that conflict are left as they are.

    Add ``.returning(...)`` to learn which rows this statement inserted
    (those that conflicted return nothing), or read ``rowcount``.

    Args:
        dialect: the database's dialect name (``engine.dialect.name``,
            ``session.get_bind().dialect.name``): one of `ON_CONFLICT_DIALECTS`.
        table: the model (or table) to insert into.
        values: one row, or several.
        index_elements: the columns of the unique index whose conflicts are
            ignored (by default a conflict on any unique constraint).

    Raises:
        ConfigurationError: `dialect` is neither PostgreSQL nor SQLite.
    """
    return _insert(dialect, table, values).on_conflict_do_nothing(index_elements=index_elements)


def upsert(
    dialect: str,
    table: type[Base] | Table,
    values: Values,
    *,
    index_elements: Sequence[str],
    set_: Mapping[str, Any],
) -> Insert:
    """``INSERT ... ON CONFLICT (index_elements) DO UPDATE SET set_``.

    A new row is inserted with `values`; a row that conflicts on
    `index_elements` is updated with `set_` instead (its values may be
    expressions of the row's columns, ``{"sold": StockRow.sold + 1}``).

    Args:
        dialect: the database's dialect name: one of `ON_CONFLICT_DIALECTS`.
        table: the model (or table) to insert into.
        values: one row, or several.
        index_elements: the columns of the unique index that decides a conflict.
        set_: the columns to update on a conflict, and their new values.

    Raises:
        ConfigurationError: `dialect` is neither PostgreSQL nor SQLite.
    """
    statement = _insert(dialect, table, values)
    return statement.on_conflict_do_update(index_elements=index_elements, set_=set_)


def dialect_of(executor: AsyncConnection | AsyncSession) -> str:
    """The dialect name of the database a connection or a session runs on."""
    if isinstance(executor, AsyncSession):
        return executor.get_bind().dialect.name
    return executor.dialect.name


async def read_snapshot(conn: AsyncConnection) -> None:
    """Make the reads that follow on `conn` see one snapshot of the database.

    Call it on a fresh connection, before its first statement. PostgreSQL:
    a REPEATABLE READ transaction. SQLite: its driver begins no transaction
    for a read, so each read would see the writes committed since the one
    before; an explicit ``BEGIN`` makes them one read transaction (writers
    wait for its end to commit).
    """
    if conn.dialect.name == "postgresql":
        await conn.execution_options(isolation_level="REPEATABLE READ")
    else:
        await conn.exec_driver_sql("BEGIN")


def utc(moment: dt.datetime) -> dt.datetime:
    """A datetime read back from a table, as the UTC moment commercekit stored.

    SQLite hands back naive datetimes; everything commercekit stores is UTC.
    """
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


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
