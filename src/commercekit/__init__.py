"""commercekit: pluggable e-commerce backend primitives.

The names most programs need are re-exported here. The primitives live in
their packages (`commercekit.reservations`, `commercekit.events`,
`commercekit.email`, `commercekit.auth`, `commercekit.plugins`); those that
need an optional extra (``commercekit.events.kafka`` needs
``commercekit[kafka]``, for example) are imported where they are used.
"""

from typing import TYPE_CHECKING

from commercekit._lazy import lazy_attributes
from commercekit._version import __version__
from commercekit.errors import (
    BackendUnavailable,
    CommerceKitError,
    ConfigurationError,
    HoldExpired,
    IdempotencyConflict,
    InvalidRequest,
    InvalidTransition,
    OutOfStock,
    ReservationNotFound,
)
from commercekit.plugins import PluginManager, hookimpl
from commercekit.transient import is_transient

if TYPE_CHECKING:
    ReservationExpired = HoldExpired  # deprecated: the old name of HoldExpired

__all__ = [
    "BackendUnavailable",
    "CommerceKitError",
    "ConfigurationError",
    "HoldExpired",
    "IdempotencyConflict",
    "InvalidRequest",
    "InvalidTransition",
    "OutOfStock",
    "PluginManager",
    "ReservationNotFound",
    "__version__",
    "hookimpl",
    "is_transient",
]

__getattr__ = lazy_attributes(__name__, renamed={"ReservationExpired": "HoldExpired"})
