"""Test-suite wiring: the real-server fixtures and the markers by folder."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from commercekit.testing.servers import PostgresServer

pytest_plugins = ["commercekit.testing.pytest_plugin"]

_TESTS = Path(__file__).parent
_MARKER_BY_FOLDER = {"unit": "unit", "integration": "integration", "e2e": "e2e"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by its folder: tests/unit -> unit, and so on."""
    for item in items:
        folder = item.path.relative_to(_TESTS).parts[0]
        marker = _MARKER_BY_FOLDER.get(folder)
        if marker is None:
            raise pytest.UsageError(f"{item.nodeid}: tests live under tests/unit|integration|e2e")
        item.add_marker(marker)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database, once on SQLite and once on a real PostgreSQL (async URLs)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.create_database(f"db_{uuid.uuid4().hex[:10]}")
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)
