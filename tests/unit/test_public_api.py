"""The public API: every name a module exports exists, is documented, and renders in the docs."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections import defaultdict
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


def test_no_two_public_objects_share_a_name() -> None:
    # One name per concept: a name exported by two modules is one object (a re-export).
    exporters: defaultdict[str, dict[int, list[str]]] = defaultdict(dict)
    for module in MODULES:
        for name in getattr(module, "__all__", ()):
            value = getattr(module, name)
            exporters[name].setdefault(id(value), []).append(module.__name__)
    shared = {name: list(found.values()) for name, found in exporters.items() if len(found) > 1}
    assert not shared, f"one name, different objects: {shared}"


RENAMED = [
    ("commercekit", "ReservationExpired", "HoldExpired"),
    ("commercekit.errors", "ReservationExpired", "HoldExpired"),
    ("commercekit.events", "RetryPolicy", "EventRetry"),
    ("commercekit.events.bus", "RetryPolicy", "EventRetry"),
    ("commercekit.email", "RetryPolicy", "SendRetry"),
    ("commercekit.email.retry", "RetryPolicy", "SendRetry"),
]


@pytest.mark.parametrize(("module_name", "old", "new"), RENAMED)
def test_an_old_name_still_works_for_a_release_and_warns(
    module_name: str, old: str, new: str
) -> None:
    module = importlib.import_module(module_name)
    assert old not in module.__all__
    warning = rf"{module_name}\.{old} is deprecated, use {module_name}\.{new}"
    with pytest.warns(DeprecationWarning, match=warning):
        value = getattr(module, old)
    assert value is getattr(module, new)
    namespace: dict[str, object] = {}
    with pytest.warns(DeprecationWarning, match=warning):
        exec(f"from {module_name} import {old} as imported", namespace)
    assert namespace["imported"] is value


def test_the_reservation_expired_event_keeps_its_name() -> None:
    # The event payload owns the catalog name; the exception is HoldExpired.
    from commercekit.errors import HoldExpired, InvalidTransition  # noqa: PLC0415
    from commercekit.events import CATALOG, ReservationExpired  # noqa: PLC0415

    assert CATALOG["reservation.expired"] is ReservationExpired
    assert issubclass(HoldExpired, InvalidTransition)
    assert commercekit.HoldExpired is HoldExpired
