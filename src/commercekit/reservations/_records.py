"""The JSON records the Lua scripts keep, and the models they stand for."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from commercekit.reservations.models import Reservation, ReservationLine, ReservationStatus


def fingerprint(lines: Iterable[ReservationLine]) -> str:
    """What an idempotency key remembers of a cart: its merged lines, in any order."""
    canonical = json.dumps(sorted((line.sku, line.quantity) for line in lines))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def to_time(ms: int) -> dt.datetime:
    """Redis milliseconds as an aware UTC datetime."""
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


def to_ms(moment: dt.datetime) -> int:
    """An aware datetime as Redis milliseconds."""
    return round(moment.timestamp() * 1000)


def to_lines(pairs: Iterable[Any]) -> tuple[ReservationLine, ...]:
    """``[[sku, qty], ...]`` as lines."""
    return tuple(ReservationLine(sku=sku, quantity=int(qty)) for sku, qty in pairs)


def to_reservation(record: Mapping[str, Any]) -> Reservation:
    """A record as the model; a cart spread over shards reports its whole cart."""
    return Reservation(
        id=record["id"],
        status=ReservationStatus(record["status"]),
        owner=record["owner"],
        lines=to_lines(record.get("cart") or record["lines"]),
        created_at=to_time(int(record["created"])),
        updated_at=to_time(int(record["updated"])),
        expires_at=to_time(int(record["expires"])),
        idempotency_key=record.get("idem") or None,
    )


def to_record(
    reservation: Reservation,
    lines: Iterable[ReservationLine],
    **extra: Any,
) -> dict[str, Any]:
    """The record of (one shard's `lines` of) a reservation, as reserve.lua writes it."""
    return {
        "id": reservation.id,
        "status": reservation.status.value,
        "owner": reservation.owner,
        "lines": [[line.sku, line.quantity] for line in lines],
        "created": to_ms(reservation.created_at),
        "updated": to_ms(reservation.updated_at),
        "expires": to_ms(reservation.expires_at),
        "idem": reservation.idempotency_key or "",
        "fp": fingerprint(reservation.lines),
        **extra,
    }
