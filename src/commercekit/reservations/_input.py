"""Input checks every store runs before it touches its backend."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pydantic import TypeAdapter, ValidationError

from commercekit.errors import InvalidRequest
from commercekit.reservations.models import SKU, MoveId, ReservationLine, SoldUnits
from commercekit.reservations.store import LineInput, TTLInput

MAX_LINES = 100
"""The most distinct SKUs one cart may hold."""
MAX_TTL = dt.timedelta(days=30)
MAX_TEXT = 200
MAX_CHECKED_LINES = 1 << 14
"""How many checked ``(sku, quantity)`` lines `check_line` remembers (about 0.6 kB each)
before it starts afresh."""

_sku = TypeAdapter(SKU)
_move_id: TypeAdapter[str] = TypeAdapter(MoveId)
_MAX_TTL_S = MAX_TTL.total_seconds()
# Lines that passed validation, by their exact (str, int) values: a line is
# immutable, so the next cart with the same line gets the same object without
# being validated again. Only exact `str` / `int` values are remembered and
# looked up, so a bool, a float or a str subclass always meets the validator.
_checked: dict[tuple[str, int], ReservationLine] = {}


def _describe(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors())


def check_sku(sku: object) -> str:
    """A valid SKU, or `InvalidRequest`."""
    try:
        return _sku.validate_python(sku, strict=True)
    except ValidationError as exc:
        raise InvalidRequest(f"invalid SKU {sku!r}: {_describe(exc)}") from None


def check_move_id(move_id: object) -> str:
    """A valid move id (`MoveId`), or `InvalidRequest`."""
    try:
        return _move_id.validate_python(move_id, strict=True)
    except ValidationError as exc:
        raise InvalidRequest(f"invalid move id {move_id!r}: {_describe(exc)}") from None


def check_sold_units(lines: object) -> list[SoldUnits]:
    """The lines of a move, one per SKU, location and restock location (summed), sorted.

    `InvalidRequest` for no line, or a line that is not `SoldUnits`.
    """
    if not isinstance(lines, Sequence) or not lines:
        raise InvalidRequest("a move gives back at least one line of units")
    units: dict[tuple[str, str, str], int] = {}
    for line in lines:
        if not isinstance(line, SoldUnits):
            raise InvalidRequest(f"a line of a move is SoldUnits, not {line!r}")
        here = (line.sku, line.location, line.back_at)
        units[here] = units.get(here, 0) + line.quantity
    return [
        SoldUnits(
            sku=sku,
            location=location,
            quantity=quantity,
            restock_at=None if back == location else back,
        )
        for (sku, location, back), quantity in sorted(units.items())
    ]


def check_int(value: object, name: str, *, minimum: int | None = None) -> int:
    """A whole number (not a bool, not a float) at least `minimum`."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidRequest(f"{name} must be a whole number, got {value!r}")
    if minimum is not None and value < minimum:
        raise InvalidRequest(f"{name} must be at least {minimum}, got {value}")
    if abs(value) > 2**53:
        raise InvalidRequest(f"{name} is too large: {value}")
    return value


def check_line(sku: object, quantity: object, where: str = "line") -> ReservationLine:
    """A validated `ReservationLine`, or `InvalidRequest` saying `where` it failed.

    A line seen before (same SKU string, same int quantity) is returned from a
    bounded cache instead of being validated again.
    """
    if type(sku) is str and type(quantity) is int:
        line = _checked.get((sku, quantity))
        if line is not None:
            return line
    try:
        line = ReservationLine(sku=sku, quantity=quantity)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise InvalidRequest(f"{where}: {_describe(exc)}") from None
    if type(line.sku) is str and type(line.quantity) is int:
        if len(_checked) >= MAX_CHECKED_LINES:
            _checked.clear()
        _checked[line.sku, line.quantity] = line
    return line


def check_lines(lines: Sequence[LineInput] | object) -> tuple[ReservationLine, ...]:
    """Validate a cart and merge lines of the same SKU (first-seen order)."""
    if (type(lines) is not list and type(lines) is not tuple) and (
        isinstance(lines, str | bytes) or not isinstance(lines, Sequence)
    ):
        raise InvalidRequest("lines must be a list of (sku, quantity) lines")
    if not lines:
        raise InvalidRequest("a reservation needs at least one line")
    parsed: list[ReservationLine] = []
    for index, line in enumerate(lines):
        if type(line) is tuple and len(line) == 2:
            parsed.append(check_line(line[0], line[1], f"line {index}"))
        elif isinstance(line, ReservationLine):
            # Checked again (a cache hit when it is valid): model_construct skips validation.
            parsed.append(check_line(line.sku, line.quantity, f"line {index}"))
        elif isinstance(line, tuple) and len(line) == 2:
            sku, quantity = line
            parsed.append(check_line(sku, quantity, f"line {index}"))
        else:
            raise InvalidRequest(f"line {index}: expected (sku, quantity), got {line!r}")
    if len(parsed) == 1:
        return (parsed[0],)
    totals: dict[str, int] = {}
    for line in parsed:
        totals[line.sku] = totals.get(line.sku, 0) + line.quantity
    if len(totals) > MAX_LINES:
        raise InvalidRequest(f"a cart holds at most {MAX_LINES} SKUs, got {len(totals)}")
    if len(totals) == len(parsed):
        return tuple(parsed)
    # Checking each line on its own would let [A x 3, A x 3] pass against 4 units.
    return tuple(check_line(sku, qty, f"SKU {sku} (lines summed)") for sku, qty in totals.items())


def check_ttl(ttl: TTLInput) -> int:
    """A time to live in whole milliseconds (at least 1, at most 30 days)."""
    kind = type(ttl)
    if kind is int or kind is float:
        seconds = float(ttl)  # type: ignore[arg-type]
    elif isinstance(ttl, bool) or not isinstance(ttl, dt.timedelta | int | float):
        raise InvalidRequest(f"ttl must be a timedelta or seconds, got {ttl!r}")
    else:
        seconds = ttl.total_seconds() if isinstance(ttl, dt.timedelta) else float(ttl)
    if not seconds > 0 or seconds > _MAX_TTL_S:
        raise InvalidRequest(f"ttl must be more than 0 and at most {MAX_TTL}, got {seconds}s")
    return max(1, round(seconds * 1000))


def check_text(value: object, name: str, *, optional: bool = False) -> str | None:
    """A non-empty string of at most 200 characters (or None when optional)."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise InvalidRequest(f"{name} must be a non-empty string of at most {MAX_TEXT} characters")
    return value
