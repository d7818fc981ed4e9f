from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import commercekit
from commercekit import cli
from commercekit.cli import COMMANDS_GROUP, REFERENCE_APP, Command, main

ROOT = Path(__file__).resolve().parents[2]


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


def install_command(
    path: Path, *, name: str = "commercekit-hello", value: str = "commercekit_hello:hello"
) -> Path:
    """An installed distribution with a `commercekit.commands` entry point, on the path."""
    info = path / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[{COMMANDS_GROUP}]\n{value.rsplit(':', maxsplit=1)[-1]} = {value}\n"
    )
    return path


HELLO = """
from commercekit.cli import Command

def arguments(parser):
    parser.add_argument("--name", default="world")

def run(args):
    if args.name == "missing":
        import commercekit_hello_missing_dependency
    print(f"hello {args.name}")
    return 0

hello = Command(help="say hello", arguments=arguments, run=run)
not_a_command = object()
"""


@pytest.fixture
def hello(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = install_command(tmp_path / "site")
    (site / "commercekit_hello.py").write_text(HELLO)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "commercekit_hello", raising=False)
    return site


def test_an_installed_distribution_adds_a_command(
    hello: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert re.search(r"hello\s+say hello", capsys.readouterr().out)
    assert main(["hello", "--name", "shop"]) == 0
    assert capsys.readouterr().out == "hello shop\n"
    with pytest.raises(SystemExit) as exit_info:
        main(["hello", "--nmae", "shop"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --nmae shop" in capsys.readouterr().err


def test_a_command_missing_a_module_names_the_reinstall(
    hello: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["hello", "--name", "missing"]) == 1
    err = capsys.readouterr().err
    assert "No module named 'commercekit_hello_missing_dependency'" in err
    assert "reinstall commercekit-hello with its dependencies: pip install commercekit-hello" in err


def test_an_entry_point_that_is_not_a_command_is_reported_when_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    site = install_command(tmp_path, name="commercekit-odd", value="commercekit_odd:not_a_command")
    (site / "commercekit_odd.py").write_text("not_a_command = object()\n")
    monkeypatch.syspath_prepend(str(site))
    assert main(["not_a_command", "--anything"]) == 1
    err = capsys.readouterr().err
    assert "commercekit not_a_command: commercekit-odd failed to load it (TypeError" in err
    assert "reinstall it: pip install commercekit-odd" in err


def test_a_command_cannot_replace_a_built_in_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    site = install_command(tmp_path, name="commercekit-sweep", value="commercekit_sweep:sweep")
    (site / "commercekit_sweep.py").write_text(HELLO.replace("hello =", "sweep ="))
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    out, err = capsys.readouterr()
    assert "--redis-url" in out  # the built-in one
    assert "commercekit-sweep adds a command 'sweep', which exists; skipped" in err


def test_the_reference_app_adds_demo_through_the_entry_point() -> None:
    (demo,) = entry_points(group=COMMANDS_GROUP, name="demo")
    assert demo.dist is not None
    assert demo.dist.name == REFERENCE_APP
    assert isinstance(demo.load(), Command)


def test_the_library_never_imports_the_reference_app() -> None:
    sources = (ROOT / "src" / "commercekit").rglob("*.py")
    offenders = [
        p for p in sources if re.search(r"^\s*(from|import) reference_app", p.read_text(), re.M)
    ]
    assert offenders == []


def without_installed_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "entry_points", lambda group: [])


def test_demo_without_the_reference_app_says_what_to_run_from_a_clone(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    without_installed_commands(monkeypatch)
    monkeypatch.chdir(ROOT)
    assert main(["demo", "--no-walk", "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("commercekit demo: comes with the reference app, which is not installed")
    assert re.search(r"install it with: pip install (-e )?\./reference_app$", err.strip()), err


@pytest.mark.parametrize(
    ("where", "library", "expected"),
    [
        ("clone", None, "pip install ./reference_app"),
        ("clone", ("clone", True), "pip install -e ./reference_app"),
        ("clone/docs", ("elsewhere.tar.gz", False), "pip install {root}/clone/reference_app"),
        ("elsewhere", ("clone", False), "pip install {root}/clone/reference_app"),
        ("elsewhere", None, f"pip install {REFERENCE_APP}"),
        ("elsewhere", ("elsewhere", True), f"pip install {REFERENCE_APP}"),
    ],
)
def test_the_reference_app_install_command_fits_where_the_user_is(
    tmp_path: Path, where: str, library: tuple[str, bool] | None, expected: str
) -> None:
    clone = tmp_path / "clone"
    (clone / "reference_app").mkdir(parents=True)
    (clone / "reference_app" / "pyproject.toml").write_text("")
    (clone / "src" / "commercekit").mkdir(parents=True)
    (clone / "docs").mkdir()
    (tmp_path / "elsewhere").mkdir()
    installed = (tmp_path / library[0], library[1]) if library else None
    command = cli._reference_app_install(tmp_path / where, installed)
    assert command == expected.format(root=tmp_path)


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
