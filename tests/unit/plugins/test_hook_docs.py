"""Every hook is documented (signature and docstring) and exercised by a test."""

from __future__ import annotations

import inspect
from pathlib import Path

from commercekit.plugins import hookspecs

TESTS = Path(__file__).parents[1].parent
HOOKS = [name for name in dir(hookspecs) if name.startswith("commercekit_")]


def test_there_are_hooks() -> None:
    assert len(HOOKS) >= 5


def test_every_hook_has_a_docstring_and_typed_arguments() -> None:
    for name in HOOKS:
        hook = getattr(hookspecs, name)
        assert inspect.getdoc(hook), f"{name} has no docstring"
        signature = inspect.signature(hook)
        assert all(
            p.annotation is not inspect.Parameter.empty for p in signature.parameters.values()
        )


def test_every_hook_is_implemented_by_some_test() -> None:
    sources = "\n".join(p.read_text() for p in TESTS.rglob("*.py"))
    for name in HOOKS:
        assert f"def {name}(" in sources, f"no test implements {name}"


def test_the_reference_page_renders_the_hookspecs() -> None:
    page = (TESTS.parent / "docs" / "reference" / "plugins.md").read_text()
    assert "::: commercekit.plugins.hookspecs" in page
