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
    assert result.stdout.strip() == "9"


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
