"""commercekit: pluggable e-commerce backend primitives.

The names most programs need are re-exported here. The primitives live in
their packages (`commercekit.reservations`, `commercekit.events`,
`commercekit.email`, `commercekit.auth`, `commercekit.plugins`); those that
need an optional extra (``commercekit.events.kafka`` needs
``commercekit[kafka]``, for example) are imported where they are used.
"""

from commercekit._version import __version__
from commercekit.errors import (
    BackendUnavailable,
    CommerceKitError,
    ConfigurationError,
    IdempotencyConflict,
    InvalidRequest,
    InvalidTransition,
    OutOfStock,
    ReservationExpired,
    ReservationNotFound,
)
from commercekit.plugins import PluginManager, hookimpl
from commercekit.transient import is_transient

__all__ = [
    "BackendUnavailable",
    "CommerceKitError",
    "ConfigurationError",
    "IdempotencyConflict",
    "InvalidRequest",
    "InvalidTransition",
    "OutOfStock",
    "PluginManager",
    "ReservationExpired",
    "ReservationNotFound",
    "__version__",
    "hookimpl",
    "is_transient",
]
