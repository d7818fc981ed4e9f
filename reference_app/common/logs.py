"""JSON logs, one object a line, each with the request id and trace id it belongs to."""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import sys
from typing import Any

from pydantic_core import to_json

from commercekit import tracing

__all__ = ["JsonFormatter", "configure_logging", "request_id", "request_id_var", "trace_id"]

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)
"""The id of the request being served (set by the request middleware)."""

_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


def request_id() -> str | None:
    """The id of the request being served, if any."""
    return request_id_var.get()


def trace_id() -> str | None:
    """The trace id of the request or event being handled, if any (`commercekit.tracing`)."""
    context = tracing.current()
    return None if context is None else context.trace_id


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object; ``extra={...}`` fields become keys.

    Every line has ``request_id`` and ``trace_id`` (null outside a request
    or an event's handler): one trace id finds an order's lines in every service.
    """

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id_var.get(),
            "trace_id": trace_id(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # pydantic's encoder: a quarter of the json module's time; str() what it cannot encode.
        return to_json(entry, fallback=str).decode()


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every log (uvicorn's too) to stderr as JSON lines; call once per process."""
    # No line says where in the source it was logged: not looking saves a stack walk per line.
    logging._srcfile = None  # the logging HOWTO's "Optimization" section
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
    # The request middleware writes one access line per request, with its id.
    logging.getLogger("uvicorn.access").disabled = True
