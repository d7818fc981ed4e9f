"""The public surface of commercekit.events and its optional extras."""

from __future__ import annotations

import subprocess
import sys

import pytest

import commercekit.events as events


def test_all_names_exist_once() -> None:
    assert len(set(events.__all__)) == len(events.__all__)
    for name in events.__all__:
        assert getattr(events, name) is not None
    with pytest.raises(AttributeError):
        _ = events.NoSuchThing  # type: ignore[attr-defined]


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)


def test_the_contracts_and_the_memory_bus_need_no_extra() -> None:
    result = _run(
        "import sys\n"
        "for name in ('aiokafka', 'sqlalchemy', 'redis'): sys.modules[name] = None\n"
        "from commercekit.events import CATALOG, InMemoryEventBus, idempotent\n"
        "print(len(CATALOG))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "17"


def test_the_kafka_bus_without_aiokafka_names_the_extra() -> None:
    result = _run(
        "import sys\n"
        "sys.modules['aiokafka'] = None\n"
        "from commercekit.errors import MissingExtraError\n"
        "try:\n"
        "    from commercekit.events import KafkaEventBus\n"
        "except MissingExtraError as exc:\n"
        "    print(exc.extra, exc)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("kafka ")
    assert 'pip install "commercekit[kafka]"' in result.stdout


ENVELOPE_ALONE = """
import sys
from commercekit.events.envelope import Envelope
from commercekit.events.payload import EventPayload

assert Envelope.__pydantic_complete__, "the envelope waits for a model_rebuild"

class Pinged(EventPayload):
    event_type = "ping.sent"
    schema_version = 1
    topic = "pings"
    key_field = "ping_id"
    ping_id: str

event = Envelope.wrap(Pinged(ping_id="p-1"), source="tests")
back = Envelope[Pinged].model_validate_json(event.to_json(), strict=True)
assert back == event and back.key == "p-1", back
wrong = event.to_json().replace(b'"ping_id":"p-1"', b'"ping_id":1')
try:
    Envelope[Pinged].model_validate_json(wrong, strict=True)
except ValueError as exc:
    print(type(exc).__name__)
print(sorted(m for m in sys.modules if m.startswith("commercekit.events.")))
"""


def test_the_envelope_is_complete_without_the_catalog() -> None:
    result = _run(ENVELOPE_ALONE)
    assert result.returncode == 0, result.stderr
    refused, modules = result.stdout.splitlines()
    assert refused == "ValidationError"  # the payload is validated, strictly
    assert modules == "['commercekit.events.envelope', 'commercekit.events.payload']"
