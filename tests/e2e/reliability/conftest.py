"""The reliability suite: faults, bad input and attacks against the real stack.

Each test records what it tried with the `tried` fixture; the run ends by
printing the summary (faults survived, inputs tried, attacks rejected).
docs/reliability.md describes the same list, and a test keeps the two in
step.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import pytest

CATEGORIES = ("fault survived", "input rejected", "attack rejected")
"""What a record is: a fault the stack recovered from, bad input, or an attack."""

_SUMMARY: dict[str, list[str]] = defaultdict(list)

Tried = Callable[[str, str], None]
"""``tried(category, what)``: record one thing the suite tried and the stack withstood."""


@pytest.fixture
def tried() -> Tried:
    """Record something tried; call it only after asserting the stack withstood it."""

    def record(category: str, what: str) -> None:
        assert category in CATEGORIES, f"unknown category {category!r}"
        _SUMMARY[category].append(what)

    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print what the reliability suite tried and the stack withstood."""
    if not _SUMMARY:
        return
    terminalreporter.section("reliability: what was tried and withstood")
    for category in CATEGORIES:
        items = _SUMMARY.get(category, [])
        terminalreporter.write_line(f"{category} ({len(items)}):")
        for item in items:
            terminalreporter.write_line(f"  - {item}")
