"""Names a module exports but imports only on first use, and old names kept for a release."""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable, Mapping


def lazy_attributes(
    package: str,
    names: Mapping[str, str] | None = None,
    *,
    renamed: Mapping[str, str] | None = None,
) -> Callable[[str], object]:
    """A module ``__getattr__`` for the names a module does not bind at import.

    Args:
        package: the module's ``__name__``.
        names: ``{attribute: module}``: imported from that module when asked
            (they need optional extras).
        renamed: ``{old name: new name}``: the old name still works for a
            release, with a `DeprecationWarning`, and is the new object.
    """
    lazy = dict(names or {})
    old = dict(renamed or {})

    def __getattr__(name: str) -> object:  # noqa: N807 - it is a module __getattr__
        new = old.get(name)
        if new is not None:
            warnings.warn(
                f"{package}.{name} is deprecated, use {package}.{new}: "
                "the old name will be removed in a future release",
                DeprecationWarning,
                stacklevel=2,
            )
            return getattr(sys.modules[package], new)
        module = lazy.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
