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


def test_demo_without_its_extras_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "fakeredis", None)  # find_spec: not installed
    assert main(["demo", "--no-walk"]) == 1
    err = capsys.readouterr().err
    assert "fakeredis missing" in err
    assert 'pip install "commercekit[demo]"' in err


@pytest.mark.parametrize("port", ["http", "-1", "65536"])
def test_demo_refuses_a_bad_port(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--port", port])
    assert exit_info.value.code == 2
    assert "not a port number" in capsys.readouterr().err


def test_demo_is_listed_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = capsys.readouterr().out
    assert "--no-walk" in out
    assert "RESERVATION_TTL_SECONDS" in out


def test_demo_with_a_bad_setting_fails_before_serving(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RESERVATION_TTL_SECONDS", "soon")
    assert main(["demo", "--no-walk"]) == 2
    err = capsys.readouterr().err
    assert "invalid settings" in err
    assert "reservation_ttl_seconds" in err
