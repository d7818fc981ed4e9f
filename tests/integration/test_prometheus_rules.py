"""The Prometheus rules of the reference app, checked and unit-tested by promtool.

``promtool`` comes with Debian's ``prometheus`` package (.ci/setup installs
it). Besides running the rule tests, each alert is broken on purpose (made
never to fire, then always to fire) to show that the tests would notice.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from commercekit.testing.pytest_plugin import unavailable

MONITORING = Path(__file__).resolve().parents[2] / "reference_app" / "monitoring"
RULES = MONITORING / "rules" / "commercekit.yml"
RULE_TESTS = MONITORING / "tests" / "rules.yml"


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        unavailable("promtool not found (apt-get install prometheus)")
    return found


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(arg) for arg in args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=cwd,
    )


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def alerting_rules() -> list[dict[str, Any]]:
    return [rule for group in load(RULES)["groups"] for rule in group["rules"] if "alert" in rule]


def test_the_rules_are_valid(promtool: str) -> None:
    result = run(promtool, "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_rule_unit_tests_pass(promtool: str) -> None:
    result = run(promtool, "test", "rules", RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_alert_is_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in load(RULE_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alerting_rules()}
    assert len(names) == len(alerting_rules())  # no name twice
    assert firing == names
    assert quiet == names


def test_the_compose_config_is_valid_with_the_rules(promtool: str, tmp_path: Path) -> None:
    # The compose file mounts rules/ at /etc/prometheus/rules: point there at the checkout's.
    config = (MONITORING / "prometheus.yml").read_text()
    assert "/etc/prometheus/rules/" in config
    (tmp_path / "prometheus.yml").write_text(
        config.replace("/etc/prometheus/rules/", f"{MONITORING / 'rules'}/")
    )
    result = run(promtool, "check", "config", tmp_path / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def with_expr(tmp_path: Path, alert: str, expr: str) -> Path:
    """A copy of the rules and their tests, with `alert`'s expression replaced."""
    data = load(RULES)
    for group in data["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == alert:
                rule["expr"] = expr
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "tests").mkdir(exist_ok=True)
    (tmp_path / "rules" / RULES.name).write_text(yaml.safe_dump(data, sort_keys=False))
    shutil.copy(RULE_TESTS, tmp_path / "tests" / RULE_TESTS.name)
    return tmp_path / "tests" / RULE_TESTS.name


@pytest.mark.parametrize("alert", [rule["alert"] for rule in alerting_rules()])
def test_the_tests_notice_an_alert_that_never_or_always_fires(
    alert: str, promtool: str, tmp_path: Path
) -> None:
    never = run(promtool, "test", "rules", with_expr(tmp_path, alert, "vector(1) < 0"))
    assert never.returncode != 0, f"{alert}: no test needs it to fire"
    assert alert in never.stdout + never.stderr
    always = run(promtool, "test", "rules", with_expr(tmp_path, alert, "vector(1)"))
    assert always.returncode != 0, f"{alert}: no test needs it quiet"
    assert alert in always.stdout + always.stderr
