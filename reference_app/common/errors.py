"""JSON error bodies: ``{"error": {"code": ..., "message": ...}}`` for every failure.

Bad input is always a 4xx (malformed JSON 400, wrong fields 422); a
transient failure (`commercekit.transient.is_transient`: a backend that
cannot be reached, PostgreSQL starting up or out of connections, Redis
loading...) is a 503 with ``Retry-After``; anything unexpected a 500 with no
details.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka.errors import KafkaError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from commercekit.errors import BackendUnavailable, InvalidRequest
from commercekit.transient import is_transient

__all__ = [
    "RETRY_AFTER",
    "ApiError",
    "ErrorBody",
    "error_response",
    "errors",
    "install_error_handlers",
]

log = logging.getLogger("reference_app.errors")

RETRY_AFTER = 1
"""Seconds a client is told to wait (``Retry-After``) after a transient failure."""

_MAYBE_TRANSIENT: tuple[type[Exception], ...] = (
    BackendUnavailable,
    SQLAlchemyError,
    OSError,
    RedisError,
    KafkaError,
)
"""The classes a transient failure usually has; `is_transient` decides for each error.

Any other error raised from a transient one is a 503 too (see `_on_unexpected`).
"""

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}


class ErrorDetail(BaseModel):
    """What went wrong."""

    code: str = Field(description="Stable and machine-readable: `out_of_stock`, `forbidden`...")
    message: str = Field(description="For people.")
    details: Any = Field(default=None, description="More, for some errors.")


class ErrorBody(BaseModel):
    """Every error answer: ``{"error": {"code": ..., "message": ...}}``."""

    error: ErrorDetail


def errors(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for error answers: each status with the `ErrorBody` model.

    ``errors(404, 409, s409="out of stock")`` describes 409 as "out of stock".
    """
    return {
        status: {
            "model": ErrorBody,
            "description": descriptions.get(f"s{status}", _CODES.get(status, "error")),
        }
        for status in statuses
    }


class ApiError(Exception):
    """An error answer a route raises on purpose.

    Args:
        status: the HTTP status.
        message: what went wrong, for the client.
        code: a stable machine-readable code; derived from `status` by default.
        headers: extra response headers.
        details: more about the error, as JSON (``error.details``).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _CODES.get(status, "error")
        self.headers = dict(headers or {})
        self.details = details


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
    details: Any = None,
) -> JSONResponse:
    """A JSON error answer in the shared shape."""
    error: dict[str, Any] = {"code": code or _CODES.get(status, "error"), "message": message}
    if details is not None:
        error["details"] = details
    return JSONResponse({"error": error}, status_code=status, headers=dict(headers or {}))


def _validation_message(errors: Sequence[Any]) -> tuple[int, str, str, list[dict[str, Any]]]:
    details = [
        {"field": ".".join(str(p) for p in e.get("loc", ())[1:]) or None, "message": e.get("msg")}
        for e in errors
    ]
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "malformed_json", "the request body is not valid JSON", details
    parts = [f"{d['field']}: {d['message']}" if d["field"] else str(d["message"]) for d in details]
    return 422, "validation_error", "invalid request: " + "; ".join(parts), details


async def _on_validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    status, code, message, details = _validation_message(exc.errors())
    return error_response(status, message, code=code, details=details)


async def _on_http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    return error_response(exc.status_code, message, headers=exc.headers)


async def _on_api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(
        exc.status, exc.message, code=exc.code, headers=exc.headers, details=exc.details
    )


async def _on_invalid_request(_: Request, exc: Exception) -> JSONResponse:
    # The library refused the input (a cart summing past the unit limit...).
    return error_response(422, f"invalid request: {exc}", code="validation_error")


def _unavailable(exc: Exception) -> JSONResponse:
    log.warning("backend unavailable: %r", exc)
    return error_response(
        503,
        "a backend service is unavailable, retry later",
        code="backend_unavailable",
        headers={"Retry-After": str(RETRY_AFTER)},
    )


async def _on_unexpected(_: Request, exc: Exception) -> JSONResponse:
    # A 503 if transient (a backend refusing, or anything raised from that), else a 500.
    if is_transient(exc):
        return _unavailable(exc)
    log.error("unhandled error", exc_info=exc)
    return error_response(500, "internal error")


def install_error_handlers(app: FastAPI) -> None:
    """Register the JSON error handlers on `app`."""
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(InvalidRequest, _on_invalid_request)
    # Registered by class too, so their answer is made inside the request
    # middleware (request id, access line, metrics) like any other error's.
    for maybe_transient in _MAYBE_TRANSIENT:
        app.add_exception_handler(maybe_transient, _on_unexpected)
    app.add_exception_handler(Exception, _on_unexpected)
