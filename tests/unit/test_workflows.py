"""The CI and release workflows and the Read the Docs config: valid, and doing what they say.

The workflows are checked offline against the GitHub workflow JSON Schema
and .readthedocs.yaml against Read the Docs' (the copies check-jsonschema
ships); then what each must do is read out of it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

import commercekit

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
README = ROOT / "README.md"


def check_jsonschema(schema: str, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
    )


def workflow(name: str) -> dict[Any, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(data, dict)
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = job["steps"]
    return found


def runs(job: dict[str, Any]) -> list[str]:
    return [step["run"].strip() for step in steps(job) if "run" in step]


def uses(job: dict[str, Any]) -> list[str]:
    return [step["uses"] for step in steps(job) if "uses" in step]


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("*.yml")), ids=lambda p: p.name)
def test_each_workflow_is_valid_against_the_github_schema(path: Path) -> None:
    result = check_jsonschema("vendor.github-workflows", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  test:\n    steps:\n      - run: bash .ci/run\n")
    result = check_jsonschema("vendor.github-workflows", broken)
    assert result.returncode == 1
    assert "runs-on" in result.stdout


def test_ci_runs_the_ci_script_on_pushes_and_pull_requests() -> None:
    assert {p.name for p in WORKFLOWS.glob("*.yml")} == {"ci.yml", "release.yml"}
    ci = workflow("ci.yml")
    assert {"push", "pull_request", "workflow_call"} <= set(ci["on"])
    (job,) = ci["jobs"].values()
    assert uses(job)[0].startswith("actions/checkout@")
    assert runs(job) == ["bash .ci/run"]
    assert ci["permissions"] == {"contents": "read"}


def test_the_release_tests_builds_checks_and_publishes_both_distributions() -> None:
    release = workflow("release.yml")
    assert release["on"] == {"push": {"tags": ["v*"]}}
    jobs = release["jobs"]
    assert jobs["test"]["uses"] == "./.github/workflows/ci.yml"
    build = jobs["build"]
    assert build["needs"] == "test"
    commands = runs(build)
    # `python -m build DIR` builds the sdist, then the wheel from the sdist.
    assert "python -m build --outdir dist ." in commands
    assert "python -m build --outdir dist reference_app" in commands
    assert "python -m twine check --strict dist/*" in commands
    assert commands.index("python -m twine check --strict dist/*") > commands.index(
        "python -m build --outdir dist reference_app"
    )
    assert any(step.startswith("actions/upload-artifact@") for step in uses(build))
    publish = jobs["publish"]
    assert publish["needs"] == "build"
    assert publish["permissions"] == {"id-token": "write"}
    assert publish["environment"]["name"] == "pypi"
    assert uses(publish)[-1] == "pypa/gh-action-pypi-publish@release/v1"
    assert "with" not in steps(publish)[-1]  # no password: trusted publishing
    assert release["permissions"] == {"contents": "read"}  # id-token only where it publishes


def version_check() -> str:
    (script,) = [
        step["run"]
        for step in steps(workflow("release.yml")["jobs"]["build"])
        if "GITHUB_REF_NAME" in step.get("run", "")
    ]
    return str(script)


@pytest.mark.parametrize(
    ("tag", "passes"), [(f"v{commercekit.__version__}", True), ("v99.0.0", False)]
)
def test_the_release_refuses_a_tag_that_is_not_both_versions(tag: str, passes: bool) -> None:
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", version_check()],
        cwd=ROOT,
        env={
            **os.environ,
            "GITHUB_REF_NAME": tag,  # `python` below is this interpreter, as on the runner
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode == 0) is passes, result.stderr
    if not passes:
        assert f"commercekit is {commercekit.__version__}" in result.stderr


def test_read_the_docs_builds_the_mkdocs_site_strictly_with_what_it_imports() -> None:
    config = ROOT / ".readthedocs.yaml"
    result = check_jsonschema("vendor.readthedocs", config)
    assert result.returncode == 0, result.stdout + result.stderr
    data = yaml.safe_load(config.read_text())
    assert data["mkdocs"] == {"configuration": "mkdocs.yml", "fail_on_warning": True}
    installs = data["python"]["install"]
    assert installs[0] == {"method": "pip", "path": ".", "extra_requirements": ["docs"]}
    # docs/hooks.py imports the reference app's services.
    assert installs[1] == {"method": "pip", "path": "reference_app"}
    assert "from reference_app" in (ROOT / "docs" / "hooks.py").read_text()
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(dep.startswith("mkdocs-material") for dep in extras["docs"])
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"][
        "Documentation"
    ].startswith("https://commercekit.readthedocs.io")


def bash_blocks(text: str) -> list[str]:
    return [block.strip() for block in re.findall(r"^```bash\n(.*?)^```", text, re.M | re.S)]


def test_the_readme_opens_with_the_demo_and_the_ci_script() -> None:
    demo, ci = bash_blocks(README.read_text())[:2]
    assert demo == "pip install . ./reference_app && commercekit demo"
    assert ci == "bash .ci/run"
    # .ci/run installs everything: the library with its dev extra and the app.
    installs = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.startswith("python -m pip install")
    ]
    assert installs == [
        'python -m pip install --quiet --disable-pip-version-check -e ".[dev]" -e ./reference_app'
    ]


def test_the_two_distributions_share_one_version() -> None:
    app = tomllib.loads((ROOT / "reference_app" / "pyproject.toml").read_text())["project"]
    assert app["version"] == commercekit.__version__
    assert any(dep.startswith("commercekit[app,embedded]") for dep in app["dependencies"])
