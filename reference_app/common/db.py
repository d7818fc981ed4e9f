"""The app's own tables and the migrations every service applies at start."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase

from commercekit.sql import NAMING_CONVENTION, alembic_config

__all__ = ["VERSION_TABLE", "AppBase", "migrate", "ping"]

VERSION_TABLE = "refapp_alembic_version"
"""The reference app's Alembic history (commercekit keeps its own)."""

_MIGRATION_LOCK = 7_420_001  # pg_advisory_xact_lock key: one migrating replica at a time


class AppBase(DeclarativeBase):
    """Declarative base of the reference app's own tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def app_alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic `Config` for ``reference_app/migrations``, bound to `connection`."""
    config = Config()
    config.set_main_option("script_location", str(resources.files("reference_app") / "migrations"))
    config.set_main_option("version_table", VERSION_TABLE)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _upgrade_all(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Replicas start together: let one migrate while the others wait.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    command.upgrade(alembic_config(connection), "heads")
    command.upgrade(app_alembic_config(connection), "heads")


async def migrate(engine: AsyncEngine) -> None:
    """Apply commercekit's migrations, then the app's, in one transaction."""
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade_all)


async def ping(engine: AsyncEngine) -> None:
    """``SELECT 1``: raises if the database does not answer."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
