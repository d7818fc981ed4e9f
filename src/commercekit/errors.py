"""Every exception commercekit raises, in one tree.

```
CommerceKitError
├── ConfigurationError        a setting or an argument is unusable
└── MissingExtraError         an optional dependency is not installed (also an ImportError)
```

The test harness adds its own branch (see `commercekit.testing.servers`):

```
CommerceKitError
└── ServerError
    ├── ServerNotAvailable    a server's binary or jars are not installed here
    └── ServerStartError      the server was found but did not become ready
```

Catch `CommerceKitError` to handle anything the library raises on purpose.
"""

from __future__ import annotations

__all__ = ["CommerceKitError", "ConfigurationError", "MissingExtraError"]


class CommerceKitError(Exception):
    """Base class of every exception raised by commercekit on purpose."""


class ConfigurationError(CommerceKitError, ValueError):
    """A setting or an argument cannot be used as given."""


class MissingExtraError(CommerceKitError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, extra: str, module: str) -> None:
        self.extra = extra
        self.module = module
        super().__init__(
            f'{module} needs an optional dependency: pip install "commercekit[{extra}]"'
        )
