"""The monitoring on the running stack: a real Prometheus scrapes every service.

Prometheus (Debian's ``prometheus`` package) runs on a loopback port with
the reference app's rules (reference_app/monitoring/rules/) and one job per
service, each replica a target, as the compose stack's Prometheus does. A
shopper makes a little traffic (sign-up, a hold, a payment); then every
query of the Grafana dashboard and every rule's expression must return
series. An alert's condition (``x > 1000``) is empty on a healthy stack by
design, so each of its sides is checked without its threshold.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from reference_app.launch import SERVICES, LocalStack

from commercekit.testing.pytest_plugin import unavailable
from commercekit.testing.servers import Server
from tests.e2e.conftest import SHARED_ADMIN_EMAIL
from tests.e2e.gateway import gateway_client

MONITORING = Path(__file__).resolve().parents[2] / "reference_app" / "monitoring"
RULES = MONITORING / "rules"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "commercekit.json"
PASSWORD = "correct horse battery staple"
SCRAPE_SECONDS = 1
WITHIN = 40.0
"""Seconds for every query to return series once the traffic is made."""

_JOIN = re.compile(r"\s+(?:and|or|unless)(?:\s+(?:on|ignoring)\s*\([^)]*\))?\s+")
_THRESHOLD = re.compile(r"\s*(?:==|!=|>=|<=|>|<)\s*-?[0-9.]+(?:e[+-]?[0-9]+)?\s*$")


class PrometheusServer(Server):
    """Prometheus scraping `targets` (job -> ``host:port`` list) and evaluating `rules`."""

    name = "prometheus"

    def __init__(self, workdir: str | Path, targets: Mapping[str, list[str]], rules: Path) -> None:
        super().__init__(workdir)
        self.targets = dict(targets)
        self.rules = rules

    @classmethod
    def missing(cls) -> str | None:
        if shutil.which("prometheus") is None:
            return "prometheus not found (apt-get install prometheus)"
        return None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _prepare(self) -> None:
        config = {
            "global": {
                "scrape_interval": f"{SCRAPE_SECONDS}s",
                "scrape_timeout": f"{SCRAPE_SECONDS}s",
                "evaluation_interval": f"{SCRAPE_SECONDS}s",
            },
            "rule_files": [str(self.rules / "*.yml")],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": targets}]}
                for job, targets in self.targets.items()
            ],
        }
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(config))

    def _command(self) -> list[str]:
        binary = shutil.which("prometheus")
        assert binary is not None
        return [
            binary,
            f"--config.file={self.workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address={self.host}:{self.port}",
            "--log.level=warn",
        ]

    def _is_ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector `expr` evaluates to now."""
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        assert answer.status_code == 200, (expr, answer.text)
        body = answer.json()
        assert body["status"] == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def api(self, path: str) -> Any:
        answer = httpx.get(f"{self.url}/api/v1/{path}", timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()["data"]


@pytest.fixture(scope="module")
def prometheus(
    stack: LocalStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    reason = PrometheusServer.missing()
    if reason is not None:
        unavailable(reason)
    targets = {
        spec.name: [urlsplit(url).netloc for url in stack.urls(spec.name)] for spec in SERVICES
    }
    with PrometheusServer(tmp_path_factory.mktemp("prometheus"), targets, RULES) as server:
        yield server


def rules() -> list[dict[str, Any]]:
    found = []
    for path in sorted(RULES.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            found.extend(group["rules"])
    return found


def panel_queries() -> dict[str, str]:
    """``panel title (refId) -> expr`` of every query of the dashboard."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return {
        f"panel {panel['title']!r} ({target['refId']})": target["expr"]
        for panel in panels
        if panel["type"] != "row"
        for target in panel["targets"]
    }


def conditions(expr: str) -> list[str]:
    """The sides of an alert's condition, each without its threshold."""
    sides = []
    for part in _JOIN.split(" ".join(expr.split())):
        inner = _THRESHOLD.sub("", part)
        assert inner != part, f"{part!r} compares with no number"
        sides.append(inner)
    return sides


def expressions() -> dict[str, str]:
    """What must return series: the dashboard's queries, each rule's expression and record."""
    wanted = panel_queries()
    for rule in rules():
        if "record" in rule:
            wanted[f"record {rule['record']}"] = rule["expr"]
            wanted[f"recorded {rule['record']}"] = rule["record"]
        else:
            for n, side in enumerate(conditions(rule["expr"])):
                wanted[f"alert {rule['alert']} ({n})"] = side
    return wanted


def make_traffic(stack: LocalStack) -> None:
    """A product, a shopper's sign-up, a hold and its payment, a product list."""
    with gateway_client(stack) as http:

        def sign_in(email: str) -> dict[str, str]:
            name = f"m{uuid.uuid4().hex[:12]}"
            body = {"username": name, "email": email, "password": PASSWORD}
            signup = http.post("/api/v1/auth/signup", json=body)
            assert signup.status_code in (201, 409), signup.text  # the admin may exist
            login = http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
            assert login.status_code == 200, login.text
            return {"Authorization": f"Bearer {login.json()['accessToken']}"}

        admin = sign_in(SHARED_ADMIN_EMAIL)
        sku = f"MON-{uuid.uuid4().hex[:10]}"
        product = http.post(
            "/api/v1/inventory",
            json={"sku": sku, "name": "Gauge", "price": "2.50", "stock": 5},
            headers=admin,
        )
        assert product.status_code == 201, product.text
        shopper = sign_in(f"m{uuid.uuid4().hex[:12]}@example.com")
        held = http.post(
            "/api/v1/inventory/reserve",
            json={"productId": product.json()["id"], "quantity": 2},
            headers=shopper,
        )
        assert held.status_code == 201, held.text
        paid = http.post(
            "/api/v1/payment",
            json={
                "reservationId": held.json()["reservationId"],
                "amount": "5.00",
                "paymentMethod": "tok_success",
            },
            headers=shopper,
        )
        assert paid.status_code in (201, 202), paid.text
        assert http.get("/api/v1/products").status_code == 200
        # A counter's first sample shows no increase: reserve again once it was scraped.
        time.sleep(3 * SCRAPE_SECONDS)
        again = http.post(
            "/api/v1/inventory/reserve",
            json={"productId": product.json()["id"], "quantity": 1},
            headers=shopper,
        )
        assert again.status_code == 201, again.text


def test_prometheus_scrapes_every_replica_and_every_query_returns_series(
    stack: LocalStack, prometheus: PrometheusServer
) -> None:
    started = time.monotonic()
    wanted = expressions()
    assert len(wanted) > 40
    expected_targets = sorted(
        (spec.name, urlsplit(url).netloc) for spec in SERVICES for url in stack.urls(spec.name)
    )

    def targets_up() -> list[tuple[str, str]]:
        targets = prometheus.api("targets")["activeTargets"]
        return sorted(
            (t["labels"]["job"], t["labels"]["instance"]) for t in targets if t["health"] == "up"
        )

    deadline = time.monotonic() + WITHIN
    while targets_up() != expected_targets and time.monotonic() < deadline:
        time.sleep(SCRAPE_SECONDS / 2)
    make_traffic(stack)
    while True:
        up = targets_up()
        empty = sorted(name for name, expr in wanted.items() if not prometheus.query(expr))
        if (up == expected_targets and not empty) or time.monotonic() > deadline:
            break
        time.sleep(SCRAPE_SECONDS)
    assert up == expected_targets  # both inventory and both worker replicas too
    assert not empty, "no series for:\n" + "\n".join(f"{n}: {wanted[n]}" for n in empty)

    # Every rule evaluates without an error.
    groups = prometheus.api("rules")["groups"]
    evaluated = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(evaluated) == {rule.get("record") or rule["alert"] for rule in rules()}
    broken = {
        name: rule.get("lastError") for name, rule in evaluated.items() if rule["health"] != "ok"
    }
    assert not broken, broken

    # Every service reaches each of its dependencies.
    seen = {
        (s["metric"]["job"], s["metric"]["dependency"]): float(s["value"][1])
        for s in prometheus.query("job_dependency:refapp_dependency_up:min")
    }
    assert seen == {
        ("user", "postgres"): 1,
        **{
            (job, dep): 1
            for job in ("inventory", "payment", "worker")
            for dep in ("postgres", "redis", "kafka")
        },
        ("email", "postgres"): 1,
        ("email", "kafka"): 1,
    }
    reserve = prometheus.query(
        'job_route:http_requests:rate5m{job="inventory", route="/api/v1/inventory/reserve"}'
    )
    assert reserve
    assert sum(float(s["value"][1]) for s in reserve) > 0
    assert time.monotonic() - started < 60
