"""The JSON records the Lua scripts keep, and the models they stand for."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

from commercekit.errors import UnsupportedRecordVersion
from commercekit.reservations.models import (
    Allocation,
    Reservation,
    ReservationLine,
    ReservationStatus,
)

RECORD_VERSION = 3
"""The newest record format this release reads (``RECORD_VERSION`` of ``lua/_lib.lua``).

Version 0 is a record written before records had a version (no ``v``);
version 1 adds ``v``; version 2 adds ``alloc``, where the units are held
(a record without allocations is still written as version 1); version 3,
the backordered units of an allocation (a 4th element; a record with none
is still written as version 2). Each version
only adds fields, so a release reads every older record, and refuses a
newer one (`UnsupportedRecordVersion`) instead of misreading it.
"""


def check_version(record: Mapping[str, Any]) -> None:
    """Refuse a record a newer release wrote (`UnsupportedRecordVersion`)."""
    version = record.get("v", 0)
    if version > RECORD_VERSION:
        raise UnsupportedRecordVersion(str(record.get("id")), int(version), RECORD_VERSION)


def fingerprint(lines: Iterable[ReservationLine]) -> str:
    """What an idempotency key remembers of a cart: its merged lines, in any order.

    The SHA-256 of ``json.dumps`` of the sorted ``[sku, quantity]`` pairs (kept
    in Redis and restored from the ledger, so it must not change); SKUs made
    only of printable ASCII without quotes or backslashes (every valid SKU)
    are written out directly, which gives the same text as ``json.dumps``.
    """
    return _fingerprint(tuple(sorted([(line.sku, line.quantity) for line in lines])))


@functools.lru_cache(maxsize=4096)
def _fingerprint(pairs: tuple[tuple[str, int], ...]) -> str:
    if all(_plain(sku) and type(qty) is int for sku, qty in pairs):
        canonical = "[" + ", ".join([f'["{sku}", {qty}]' for sku, qty in pairs]) + "]"
    else:
        canonical = json.dumps(pairs)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _plain(text: str) -> bool:
    """Whether ``json.dumps`` writes `text` as is, between quotes."""
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def new_id() -> str:
    """A random UUID (version 4) as text, like ``str(uuid.uuid4())`` at a fraction of its cost."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


def to_time(ms: int) -> dt.datetime:
    """Redis milliseconds as an aware UTC datetime."""
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


def to_ms(moment: dt.datetime) -> int:
    """An aware datetime as Redis milliseconds."""
    return round(moment.timestamp() * 1000)


def to_lines(pairs: Iterable[Any]) -> tuple[ReservationLine, ...]:
    """``[[sku, qty], ...]`` as lines."""
    return tuple(ReservationLine(sku=sku, quantity=int(qty)) for sku, qty in pairs)


def to_allocations(entries: Iterable[Any] | None) -> tuple[Allocation, ...]:
    """``[[sku, location, qty(, backordered)], ...]`` as allocations (none for a record without).

    The scripts wrote them from checked SKUs and location names.
    """
    if not entries:
        return ()
    # Validating is cheaper than `model_construct` (pydantic's core does it in Rust).
    return tuple(
        Allocation(sku=e[0], location=e[1], quantity=int(e[2]))
        if len(e) == 3
        else Allocation(sku=e[0], location=e[1], quantity=int(e[2]), backordered=int(e[3]))
        for e in entries
    )


def from_allocations(allocations: Iterable[Allocation]) -> list[list[Any]]:
    """Allocations as the scripts write them (`to_allocations` reads them back)."""
    return [
        [a.sku, a.location, a.quantity, a.backordered]
        if a.backordered
        else [a.sku, a.location, a.quantity]
        for a in allocations
    ]


def to_reservation(record: Mapping[str, Any]) -> Reservation:
    """A record as the model; a cart spread over shards reports its whole cart."""
    check_version(record)
    return Reservation(
        id=record["id"],
        status=ReservationStatus(record["status"]),
        owner=record["owner"],
        lines=to_lines(record.get("cart") or record["lines"]),
        created_at=to_time(int(record["created"])),
        updated_at=to_time(int(record["updated"])),
        expires_at=to_time(int(record["expires"])),
        idempotency_key=record.get("idem") or None,
        allocations=to_allocations(record.get("cart_alloc") or record.get("alloc")),
    )


def to_record(
    reservation: Reservation,
    lines: Iterable[ReservationLine],
    allocations: Iterable[Allocation] = (),
    **extra: Any,
) -> dict[str, Any]:
    """What restore.lua makes the record of (one shard's `lines` of) a reservation from.

    The same fields reserve.lua gives ``new_record`` (``lua/_lib.lua``), which
    adds the version: the scripts write every record.
    """
    alloc = from_allocations(allocations)
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
        **({"alloc": alloc} if alloc else {}),
        **extra,
    }
