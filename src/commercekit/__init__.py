"""commercekit: pluggable e-commerce backend primitives.

The public API is re-exported here; submodules that need an optional extra
(``commercekit.events.kafka`` needs ``commercekit[kafka]``, for example) are
imported explicitly by the code that uses them.
"""

from commercekit._version import __version__
from commercekit.errors import CommerceKitError, ConfigurationError

__all__ = [
    "CommerceKitError",
    "ConfigurationError",
    "__version__",
]
