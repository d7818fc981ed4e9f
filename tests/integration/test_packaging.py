"""Both distributions as a user gets them: built, installed in fresh virtualenvs, demo running.

- the sdists are built, and the wheels built from the sdists (what the
  release uploads), so each sdist must hold what its wheel needs; the
  library's wheel holds no reference app;
- in a fresh venv, the library wheel alone: ``commercekit demo`` names the
  command that installs the app, from a clone and from elsewhere; with the
  app's wheel too, ``commercekit demo --no-walk`` serves its API;
- the README's first command, run as written from the clone, in a fresh venv;
- the install line of ``.ci/run``, in a fresh venv, installs every tool the
  README's test command uses, and a test module passes there;
- reference_app/Dockerfile's COPY lines and pip command, without Docker:
  the installed app runs without the sources its image was built from.

PyPI must be reachable (pip's own cache makes a second run quick).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from commercekit.testing.servers import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BUILD_TIMEOUT = 600.0
INSTALL_TIMEOUT = 900.0
STARTUP_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0


def run(
    args: list[str], *, cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


class Venv:
    """A fresh ``python -m venv``; `env` runs commands with its bin/ first on PATH."""

    def __init__(self, path: Path) -> None:
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
        self.path = path
        self.bin = path / "bin"
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}
            and not key.startswith("PIP_")
            and key not in {"ADMIN_EMAILS", "LOG_LEVEL", "ENVIRONMENT", "JWT_ACCESS_SECRET"}
        }
        self.env.update(
            VIRTUAL_ENV=str(path),
            PATH=os.pathsep.join([str(self.bin), os.environ.get("PATH", "")]),
            PIP_DISABLE_PIP_VERSION_CHECK="1",
        )

    def pip_install(self, *args: str, cwd: Path) -> None:
        run(
            [str(self.bin / "python"), "-m", "pip", "install", *args],
            cwd=cwd,
            env=self.env,
            timeout=INSTALL_TIMEOUT,
        )

    def commercekit(self, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / "commercekit"), *args],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=STARTUP_TIMEOUT,
            check=False,
        )

    def distributions(self) -> set[str]:
        listed = run(
            [str(self.bin / "python"), "-m", "pip", "list", "--format", "json"],
            cwd=self.path,
            env=self.env,
            timeout=120,
        )
        return {item["name"] for item in json.loads(listed.stdout)}


@contextmanager
def demo_serving(command: list[str], *, cwd: Path, env: dict[str, str]) -> Iterator[str]:
    """Start ``commercekit demo --no-walk`` on a free port; its URL once its API answers."""
    port = free_port()
    logs = cwd / f"demo-{port}.log"
    with logs.open("w") as log:
        proc = subprocess.Popen(
            [*command, "--no-walk", "--port", str(port)],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            assert proc.poll() is None, f"the demo exited ({proc.returncode}):\n{logs.read_text()}"
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"no answer in time:\n{logs.read_text()}"
            time.sleep(0.5)
        yield url
        proc.send_signal(signal.SIGINT)
        assert proc.wait(STOP_TIMEOUT) == 0, logs.read_text()
        assert "commercekit demo: stopped" in logs.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(STOP_TIMEOUT)


def assert_the_api_answers(url: str) -> None:
    products = httpx.get(f"{url}/api/v1/products", timeout=10)
    assert products.status_code == 200, products.text
    assert isinstance(products.json(), (list, dict))
    signup = httpx.post(
        f"{url}/api/v1/auth/signup",
        json={"username": "ada", "email": "ada@example.com", "password": "correct horse battery"},
        timeout=30,
    )
    assert signup.status_code == 201, signup.text


# ---------------------------------------------------------------- the built distributions


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both sdists, and the wheels built from them (``python -m build DIR`` does both)."""
    out = tmp_path_factory.mktemp("dist")
    for project in (ROOT, ROOT / "reference_app"):
        run(
            [sys.executable, "-m", "build", "--outdir", str(out), str(project)],
            cwd=ROOT,
            env=dict(os.environ),
            timeout=BUILD_TIMEOUT,
        )
    return out


def one(folder: Path, pattern: str) -> Path:
    (found,) = folder.glob(pattern)
    return found


def test_the_library_wheel_holds_no_reference_app(dist: Path) -> None:
    with zipfile.ZipFile(one(dist, "commercekit-*.whl")) as wheel:
        names = wheel.namelist()
    assert not [name for name in names if name.startswith("reference_app")]
    assert "commercekit/cli.py" in names
    assert any(name.startswith("commercekit/email/templates/") for name in names)
    assert any(name.endswith(".lua") for name in names)


def test_the_app_wheel_is_the_reference_app_with_its_data_and_command(dist: Path) -> None:
    with zipfile.ZipFile(one(dist, "commercekit_reference_app-*.whl")) as wheel:
        names = wheel.namelist()
        info = next(name for name in names if name.endswith(".dist-info/entry_points.txt"))
        entry_points = wheel.read(info).decode()
    packages = {name.split("/")[0] for name in names if "/" in name}
    assert packages == {"reference_app", next(p for p in packages if p.endswith(".dist-info"))}
    for needed in ("launch.py", "gateway/nginx.conf", "migrations/env.py", "demo/command.py"):
        assert f"reference_app/{needed}" in names
    assert any(re.match(r"reference_app/migrations/versions/.+\.py$", name) for name in names)
    for left_out in ("pyproject.toml", "Dockerfile", "docker-compose.yml", "PKG-INFO"):
        assert f"reference_app/{left_out}" not in names
    assert "[commercekit.commands]\ndemo = reference_app.demo.command:demo" in entry_points


def test_the_app_sdist_holds_the_container_files(dist: Path) -> None:
    with tarfile.open(one(dist, "commercekit_reference_app-*.tar.gz")) as sdist:
        names = sdist.getnames()
    for needed in ("pyproject.toml", "Dockerfile", "docker-compose.yml", ".env.example"):
        assert any(name.endswith(f"/{needed}") for name in names), needed


def test_the_wheels_built_from_the_sdists_install_and_serve_the_demo(
    dist: Path, tmp_path: Path
) -> None:
    venv = Venv(tmp_path / "venv")
    library = one(dist, "commercekit-*.whl")
    venv.pip_install(str(library), cwd=tmp_path)

    # The library alone: demo says what to run, from where the user is.
    outside = venv.commercekit("demo", "--no-walk", cwd=tmp_path)
    assert outside.returncode == 1
    assert outside.stderr.strip().endswith("pip install commercekit-reference-app")
    in_clone = venv.commercekit("demo", cwd=ROOT)
    assert in_clone.returncode == 1
    assert in_clone.stderr.strip().endswith("install it with: pip install ./reference_app")

    venv.pip_install(str(library), str(one(dist, "commercekit_reference_app-*.whl")), cwd=tmp_path)
    assert {"commercekit", "commercekit-reference-app"} <= venv.distributions()
    with demo_serving([str(venv.bin / "commercekit"), "demo"], cwd=tmp_path, env=venv.env) as url:
        assert_the_api_answers(url)


# ---------------------------------------------------------------- the README's two commands


def bash_blocks(text: str) -> list[str]:
    return [block.strip() for block in re.findall(r"^```bash\n(.*?)^```", text, re.M | re.S)]


def test_the_readmes_first_command_installs_from_the_clone_and_runs_the_demo(
    tmp_path: Path,
) -> None:
    install, start = bash_blocks(README.read_text())[0].split(" && ")
    assert start == "commercekit demo"
    venv = Venv(tmp_path / "venv")
    run(
        ["bash", "-euo", "pipefail", "-c", install], cwd=ROOT, env=venv.env, timeout=INSTALL_TIMEOUT
    )
    assert {"commercekit", "commercekit-reference-app"} <= venv.distributions()
    with demo_serving(start.split(), cwd=tmp_path, env=venv.env) as url:
        assert_the_api_answers(url)


def test_the_ci_scripts_install_line_installs_everything_the_tests_use(tmp_path: Path) -> None:
    assert bash_blocks(README.read_text())[1] == "bash .ci/run"
    (install,) = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if re.match(r"python -m pip install\b", line)
    ]
    venv = Venv(tmp_path / "venv")
    run(
        ["bash", "-euo", "pipefail", "-c", install], cwd=ROOT, env=venv.env, timeout=INSTALL_TIMEOUT
    )
    assert {"commercekit", "commercekit-reference-app"} <= venv.distributions()
    test_command = re.search(r"<!-- test-command[^\n]*-->\n```bash\n(.+?)\n```", README.read_text())
    assert test_command is not None
    for tool in re.findall(r"(?:^|&& )(\w+)", test_command[1]):
        assert (venv.bin / tool).exists(), f"{tool} (the README's test command) is not installed"
    tested = run(
        [
            str(venv.bin / "python"),
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/unit/test_cli.py",
        ],
        cwd=ROOT,
        env=venv.env,
        timeout=INSTALL_TIMEOUT,
    )
    assert re.search(r"\d+ passed", tested.stdout), tested.stdout


# ---------------------------------------------------------------- the image's install


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, rest) of reference_app/Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "reference_app" / "Dockerfile").read_text())
    found = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def test_the_images_install_step_gives_a_self_contained_app(tmp_path: Path) -> None:
    """What ``docker build`` does, without Docker: its COPY lines, then its pip command."""
    instructions = dockerfile()
    context = tmp_path / "app"  # WORKDIR /app; the build context is the repository root
    context.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.py[cod]", ".env")
    for keyword, rest in instructions:
        if keyword == "COPY":
            *sources, target = rest.split()
            for source in sources:
                origin, dest = ROOT / source, context / target
                if origin.is_dir():
                    shutil.copytree(origin, dest, ignore=ignore)
                else:
                    dest.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, dest)
    (install,) = [
        part.strip()
        for keyword, rest in instructions
        if keyword == "RUN"
        for part in rest.split("&&")
        if part.strip().startswith("pip install")
    ]
    venv = Venv(tmp_path / "venv")
    run(
        ["bash", "-euo", "pipefail", "-c", install],
        cwd=context,
        env=venv.env,
        timeout=INSTALL_TIMEOUT,
    )
    shutil.rmtree(context)  # the image runs the installed packages, not /app
    (cmd,) = [json.loads(rest) for keyword, rest in instructions if keyword == "CMD"]
    factory = cmd[cmd.index("--factory") + 1]
    module, _, name = factory.partition(":")
    check = (
        "import importlib, sys\n"
        "from importlib import resources\n"
        f"factory = getattr(importlib.import_module({module!r}), {name!r})\n"
        "assert callable(factory)\n"
        "from reference_app.launch import GATEWAY_CONFIG\n"
        "assert GATEWAY_CONFIG.is_file() and 'site-packages' in str(GATEWAY_CONFIG)\n"
        "assert (resources.files('reference_app') / 'migrations' / 'env.py').is_file()\n"
        "import uvloop, httptools  # the CMD's --loop uvloop --http httptools\n"
    )
    run([str(venv.bin / "python"), "-c", check], cwd=tmp_path, env=venv.env, timeout=120)
    assert {"commercekit", "commercekit-reference-app"} <= venv.distributions()
