"""Input checks every store runs before it touches its backend."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pydantic import TypeAdapter, ValidationError

from commercekit.errors import InvalidRequest
from commercekit.reservations.models import SKU, ReservationLine, merge_lines
from commercekit.reservations.store import LineInput, TTLInput

MAX_LINES = 100
"""The most distinct SKUs one cart may hold."""
MAX_TTL = dt.timedelta(days=30)
MAX_TEXT = 200

_sku = TypeAdapter(SKU)


def _describe(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors())


def check_sku(sku: object) -> str:
    """A valid SKU, or `InvalidRequest`."""
    try:
        return _sku.validate_python(sku, strict=True)
    except ValidationError as exc:
        raise InvalidRequest(f"invalid SKU {sku!r}: {_describe(exc)}") from None


def check_int(value: object, name: str, *, minimum: int | None = None) -> int:
    """A whole number (not a bool, not a float) at least `minimum`."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidRequest(f"{name} must be a whole number, got {value!r}")
    if minimum is not None and value < minimum:
        raise InvalidRequest(f"{name} must be at least {minimum}, got {value}")
    if abs(value) > 2**53:
        raise InvalidRequest(f"{name} is too large: {value}")
    return value


def check_lines(lines: Sequence[LineInput] | object) -> tuple[ReservationLine, ...]:
    """Validate a cart and merge lines of the same SKU."""
    if isinstance(lines, str | bytes) or not isinstance(lines, Sequence):
        raise InvalidRequest("lines must be a list of (sku, quantity) lines")
    if not lines:
        raise InvalidRequest("a reservation needs at least one line")
    parsed: list[ReservationLine] = []
    for index, line in enumerate(lines):
        if isinstance(line, ReservationLine):
            parsed.append(line)
            continue
        if not (isinstance(line, tuple) and len(line) == 2):
            raise InvalidRequest(f"line {index}: expected (sku, quantity), got {line!r}")
        sku, quantity = line
        try:
            parsed.append(ReservationLine(sku=sku, quantity=quantity))
        except ValidationError as exc:
            raise InvalidRequest(f"line {index}: {_describe(exc)}") from None
    merged = merge_lines(parsed)
    if len(merged) > MAX_LINES:
        raise InvalidRequest(f"a cart holds at most {MAX_LINES} SKUs, got {len(merged)}")
    return merged


def check_ttl(ttl: TTLInput) -> int:
    """A time to live in whole milliseconds (at least 1, at most 30 days)."""
    if isinstance(ttl, bool) or not isinstance(ttl, dt.timedelta | int | float):
        raise InvalidRequest(f"ttl must be a timedelta or seconds, got {ttl!r}")
    seconds = ttl.total_seconds() if isinstance(ttl, dt.timedelta) else float(ttl)
    if not seconds > 0 or seconds > MAX_TTL.total_seconds():
        raise InvalidRequest(f"ttl must be more than 0 and at most {MAX_TTL}, got {seconds}s")
    return max(1, round(seconds * 1000))


def check_text(value: object, name: str, *, optional: bool = False) -> str | None:
    """A non-empty string of at most 200 characters (or None when optional)."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise InvalidRequest(f"{name} must be a non-empty string of at most {MAX_TEXT} characters")
    return value
