"""Every log line is one valid JSON object, whatever the values logged with it."""

from __future__ import annotations

import json
import logging
import uuid
from decimal import Decimal

from reference_app.common.logs import JsonFormatter


class Opaque:
    def __str__(self) -> str:
        return "opaque!"


def line(**extra: object) -> dict[str, object]:
    record = logging.LogRecord("shop", logging.WARNING, __file__, 1, "paid %s", ("x",), None)
    for key, value in extra.items():
        setattr(record, key, value)
    decoded: dict[str, object] = json.loads(JsonFormatter("tests").format(record))
    return decoded


def test_the_fixed_fields_come_first_then_the_extras() -> None:
    entry = line(order="o-1", units=3)
    assert list(entry) == [
        "time", "level", "service", "logger", "message", "request_id", "trace_id", "order", "units"
    ]  # fmt: skip
    assert entry["message"] == "paid x"
    assert (entry["level"], entry["service"], entry["logger"]) == ("warning", "tests", "shop")


def test_values_json_cannot_encode_are_written_as_text() -> None:
    key = uuid.uuid4()
    entry = line(amount=Decimal("19.99"), key=key, thing=Opaque(), customer="café")
    assert entry["amount"] == "19.99"
    assert entry["key"] == str(key)
    assert entry["thing"] == "opaque!"
    assert entry["customer"] == "café"


def test_an_exception_is_one_field_of_the_line() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        import sys  # noqa: PLC0415

        record = logging.LogRecord("shop", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    entry = json.loads(JsonFormatter("tests").format(record))
    assert "ValueError: bad" in entry["exception"]
