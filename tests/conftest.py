"""Test-suite wiring: the real-server fixtures and the markers by folder."""

from __future__ import annotations

from pathlib import Path

import pytest

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
