"""docs/operations.md describes every alert and every dashboard panel of reference_app/monitoring/.

promtool checks the rules (tests/integration/test_prometheus_rules.py) and a
real Prometheus runs them on the stack (tests/e2e/test_monitoring.py); this
checks the words around them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
MONITORING = ROOT / "reference_app" / "monitoring"
OPERATIONS = ROOT / "docs" / "operations.md"


def section() -> str:
    text = OPERATIONS.read_text()
    start = text.index("## Dashboard and alerts\n")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def alerts() -> list[dict[str, Any]]:
    data = yaml.safe_load((MONITORING / "rules" / "commercekit.yml").read_text())
    return [rule for group in data["groups"] for rule in group["rules"] if "alert" in rule]


def panels() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in sorted((MONITORING / "grafana" / "dashboards").glob("*.json")):
        found += [p for p in json.loads(path.read_text())["panels"] if p["type"] != "row"]
    return found


def test_each_alert_has_a_severity_a_summary_and_a_row_in_the_docs() -> None:
    docs = section()
    assert alerts()
    for rule in alerts():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        row = f"| `{rule['alert']}` ({rule['labels']['severity']}) |"
        assert row in docs, f"docs/operations.md: no row {row}"


def test_each_panel_has_a_description_and_a_row_in_the_docs() -> None:
    docs = section()
    assert len(panels()) >= 10
    for panel in panels():
        assert panel.get("description"), panel["title"]
        assert panel["targets"], panel["title"]
        assert f"| {panel['title']} |" in docs, f"docs/operations.md: no row for {panel['title']!r}"


def test_the_panels_have_distinct_ids_and_do_not_overlap() -> None:
    every = json.loads((MONITORING / "grafana" / "dashboards" / "commercekit.json").read_text())
    ids = [p["id"] for p in every["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in every["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not mine & cells, f"{panel['title']!r} overlaps another panel"
        cells |= mine
