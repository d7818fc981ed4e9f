"""docs/reliability.md names every test of the reliability suite, and only tests that exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.e2e.reliability.conftest import CATEGORIES

ROOT = Path(__file__).parents[2]
DOC = ROOT / "docs" / "reliability.md"
SUITE = ROOT / "tests" / "e2e" / "reliability"
REFERENCED = ROOT / "tests" / "e2e"  # the doc also points at the other e2e tests


def functions_in(folder: Path) -> set[str]:
    """The test functions (module level or in classes) of the ``test_*.py`` files in `folder`."""
    names: set[str] = set()
    for path in sorted(folder.glob("test_*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
                "test_"
            ):
                names.add(node.name)
    return names


def named_in_doc() -> set[str]:
    """The test names the page quotes as code."""
    return set(re.findall(r"`(test_\w+)`", DOC.read_text()))


def test_every_reliability_test_is_named_in_the_doc() -> None:
    tests = functions_in(SUITE)
    assert len(tests) >= 20, sorted(tests)  # the suite was found
    missing = sorted(tests - named_in_doc())
    assert not missing, f"docs/reliability.md does not name: {missing}"


def test_every_test_the_doc_names_exists() -> None:
    named = named_in_doc()
    assert named
    unknown = sorted(named - functions_in(SUITE) - functions_in(REFERENCED))
    assert not unknown, f"docs/reliability.md names tests that do not exist: {unknown}"


def test_the_doc_says_how_to_run_the_suite_and_that_it_prints_the_summary() -> None:
    text = DOC.read_text()
    assert "pytest tests/e2e/reliability" in text
    assert "reliability: what was tried and withstood" in text
    for category in CATEGORIES:
        assert f"{category} (" in text, category
