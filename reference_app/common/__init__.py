"""What every service of the reference app shares.

Only the glue a shop's own service would write itself (logs, error bodies,
probes, metrics, the gateway's identity headers); the domain logic comes
from commercekit.
"""

from reference_app.common.app import service_app
from reference_app.common.errors import ApiError, error_response
from reference_app.common.identity import AdminUser, CurrentUser
from reference_app.common.logs import configure_logging, request_id

__all__ = [
    "AdminUser",
    "ApiError",
    "CurrentUser",
    "configure_logging",
    "error_response",
    "request_id",
    "service_app",
]
