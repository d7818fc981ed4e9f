"""Every example under docs/examples runs, and prints what its comments promise."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parents[2] / "docs" / "examples").glob("*.py"))
PROMISE = re.compile(r"print\(.*\)\s+#\s+(.+)$")


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_runs_and_prints_what_it_says(example: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(example)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    promises = [
        m.group(1) for line in example.read_text().splitlines() if (m := PROMISE.search(line))
    ]
    for promise in promises:
        assert promise in result.stdout, f"{example.name} did not print {promise!r}"


def test_there_are_examples() -> None:
    assert EXAMPLES
