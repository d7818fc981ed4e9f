"""Migration ``users_0002``: existing users get their identity keys, twins lose sign-in."""

from __future__ import annotations

import uuid

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from reference_app.common.db import VERSION_TABLE, AppBase, app_alembic_config, migrate
from reference_app.user import models  # noqa: F401 - registers the users table
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from commercekit.sql import alembic_config
from commercekit.testing.servers import PostgresServer

KELVIN = "\N{KELVIN SIGN}"
ROWS = [  # (username, email, role), oldest first
    ("Élise", "Élise@Example.com", "user"),
    ("élise", "élise@example.com", "user"),  # a twin PostgreSQL's lower() let in
    ("shopkeeper", "shopkeeper@example.com", "admin"),
    ("mallory", f"shop{KELVIN}eeper@example.com", "admin"),  # the KELVIN SIGN twin
    ("Plain", "Plain@Example.com", "user"),
]


def _upgrade_to_users_0001(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "heads")
    command.upgrade(app_alembic_config(connection), "users_0001")


def _differences(connection: Connection) -> list[object]:
    """What autogenerate would change in ``users`` to match the model."""

    def users_only(name: str | None, type_: str, *_: object) -> bool:
        return type_ != "table" or name == "users"

    opts = {
        "version_table": VERSION_TABLE,
        "include_name": users_only,
        "include_object": lambda obj, name, type_, *_: users_only(name, type_),
    }
    context = MigrationContext.configure(connection, opts=opts)
    return list(compare_metadata(context, AppBase.metadata))


@pytest.fixture
async def engine(postgres_server: PostgresServer) -> AsyncEngine:
    url = postgres_server.create_database(f"users_migration_{uuid.uuid4().hex[:8]}")
    return create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))


async def test_existing_users_get_their_keys_and_the_younger_twin_cannot_sign_in(
    engine: AsyncEngine,
) -> None:
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade_to_users_0001)
            for n, (username, email, role) in enumerate(ROWS):
                await conn.execute(
                    text(
                        "INSERT INTO users (id, username, email, password_hash, role, created_at)"
                        " VALUES (:id, :username, :email, 'x', :role,"
                        " now() - make_interval(mins => :age))"
                    ),
                    {
                        "id": uuid.uuid4(),
                        "username": username,
                        "email": email,
                        "role": role,
                        "age": 100 - n,
                    },
                )
        await migrate(engine)
        async with engine.connect() as conn:
            rows = (
                await conn.execute(text("SELECT id, username, username_key, email_key FROM users"))
            ).all()
            keys = {row.username: (row.username_key, row.email_key) for row in rows}
            ids = {row.username: row.id for row in rows}
            assert keys["Élise"] == ("élise", "élise@example.com")
            assert keys["shopkeeper"] == ("shopkeeper", "shopkeeper@example.com")
            assert keys["Plain"] == ("plain", "plain@example.com")
            # The younger twins keep their rows, under keys no login can produce.
            assert keys["élise"] == (
                f"DUPLICATE:{ids['élise']}:élise",
                f"DUPLICATE:{ids['élise']}:élise@example.com",
            )
            assert keys["mallory"] == (
                "mallory",
                f"DUPLICATE:{ids['mallory']}:shopkeeper@example.com",
            )
            indexes = await conn.run_sync(
                lambda c: {i["name"]: i["unique"] for i in inspect(c).get_indexes("users")}
            )
            assert indexes == {"uq_users_username_key": True, "uq_users_email_key": True}
            assert await conn.run_sync(_differences) == []
            # The index refuses a new twin, whatever spelling made its key.
            with pytest.raises(IntegrityError):
                await conn.execute(
                    text(
                        "INSERT INTO users (id, username, email, username_key, email_key,"
                        " password_hash) VALUES (:id, 'new', 'x', 'new', 'plain@example.com', 'x')"
                    ),
                    {"id": uuid.uuid4()},
                )
    finally:
        await engine.dispose()
