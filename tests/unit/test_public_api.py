"""The public API: every name a module exports exists, is documented, and renders in the docs."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path
from types import ModuleType

import pytest

import commercekit

DOCS = Path(__file__).parents[2] / "docs"


def _public_modules() -> list[ModuleType]:
    modules = [commercekit]
    for info in pkgutil.walk_packages(commercekit.__path__, "commercekit."):
        name = info.name
        if name.endswith("__main__") or ".migrations" in name:
            continue
        if any(part.startswith("_") for part in name.split(".")[1:]):
            continue
        modules.append(importlib.import_module(name))
    return modules


MODULES = _public_modules()


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_every_exported_name_exists_and_is_documented(module: ModuleType) -> None:
    assert inspect.getdoc(module), f"{module.__name__} has no docstring"
    for name in getattr(module, "__all__", ()):
        value = getattr(module, name)  # raises if __all__ names something missing
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"{module.__name__}.{name} has no docstring"


def test_every_public_package_has_a_reference_page() -> None:
    pages = "\n".join(p.read_text() for p in (DOCS / "reference").glob("*.md"))
    packages = {
        m.__name__
        for m in MODULES
        if m.__name__.count(".") == 1 and hasattr(m, "__path__") and m is not commercekit
    }
    for package in sorted(packages):
        assert f"::: {package}" in pages, f"no reference page renders {package}"
