"""commercekit's Alembic migrations create exactly the tables its models declare."""

from __future__ import annotations

import importlib
import pkgutil
import uuid

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import commercekit
from commercekit.sql import TABLE_PREFIX, VERSION_TABLE, Base, migrate
from commercekit.testing.servers import PostgresServer


def _import_every_model() -> None:
    for module in pkgutil.walk_packages(commercekit.__path__, "commercekit."):
        if module.name.endswith("__main__") or ".migrations" in module.name:
            continue
        importlib.import_module(module.name)


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return [
        diff
        for diff in compare_metadata(context, Base.metadata)
        if not (diff[0] == "remove_table" and diff[1].name == VERSION_TABLE)
    ]


async def test_migrations_match_the_models(postgres_server: PostgresServer) -> None:
    _import_every_model()
    assert Base.metadata.tables, "no models found"
    assert all(name.startswith(TABLE_PREFIX) for name in Base.metadata.tables)

    url = postgres_server.create_database(f"migrations_{uuid.uuid4().hex[:8]}")
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://"))
    try:
        await migrate(engine)
        await migrate(engine)  # a second run is a no-op
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            assert set(Base.metadata.tables) | {VERSION_TABLE} == tables
            assert await conn.run_sync(_differences) == []
    finally:
        await engine.dispose()
