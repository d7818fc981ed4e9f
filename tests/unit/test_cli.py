from __future__ import annotations

import subprocess
import sys

import pytest

import commercekit
from commercekit.cli import main


def test_version_flag_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"commercekit {commercekit.__version__}"


def test_console_script_is_installed() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "commercekit", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.startswith("commercekit ")


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: commercekit" in capsys.readouterr().out


def test_services_up_rejects_an_unknown_service(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["services", "up", "--only", "redis,mongodb"]) == 1
    assert "unknown service(s) mongodb" in capsys.readouterr().err
