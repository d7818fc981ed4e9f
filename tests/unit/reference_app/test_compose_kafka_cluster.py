"""reference_app/docker-compose.kafka-cluster.yml: valid, and over docker-compose.yml one cluster.

Docker is not available here: the override is checked against the
compose-spec JSON Schema alone and merged over the base file the way
``docker compose -f docker-compose.yml -f docker-compose.kafka-cluster.yml``
merges them (mappings key by key, volumes by their mount point, other
sequences replaced), then the merged topology is checked: three Kafka
nodes that form one KRaft quorum, replicated for a broker's loss, and every
Kafka client of the stack listing all three.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.reference_app.test_compose import (
    APP_DIR,
    BACKENDS,
    COMPOSE_FILE,
    SETTINGS,
    check_jsonschema,
    depends_on,
    environment,
    load,
    settings_from,
    shell_env,
)

CLUSTER_FILE = APP_DIR / "docker-compose.kafka-cluster.yml"
NODES = 3
CLIENT_PORT = 9092


def merge(base: Any, override: Any, key: str = "") -> Any:
    """Compose's merge of two files' values: mappings merged, volumes by target, else replaced."""
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        merged = dict(base)
        for name, value in override.items():
            merged[name] = merge(base[name], value, name) if name in base else value
        return merged
    if key == "volumes" and isinstance(base, list) and isinstance(override, list):
        by_target = {str(v).split(":")[1]: v for v in base}
        by_target.update({str(v).split(":")[1]: v for v in override})
        return list(by_target.values())
    return override


def merged() -> dict[str, Any]:
    result: dict[str, Any] = merge(load(COMPOSE_FILE), load(CLUSTER_FILE))
    return result


def kafka_nodes(services: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """The services running the Kafka image, with their environment."""
    return {
        name: environment(service, shell_env())
        for name, service in services.items()
        if str(service.get("image", "")).startswith("apache/kafka:")
    }


def test_the_override_matches_the_compose_spec() -> None:
    result = check_jsonschema(CLUSTER_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_merged_stack_matches_the_compose_spec(tmp_path: Path) -> None:
    both = tmp_path / "docker-compose.yml"
    both.write_text(yaml.safe_dump(merged(), sort_keys=False))
    result = check_jsonschema(both)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_base_file_alone_keeps_one_broker() -> None:
    services = load(COMPOSE_FILE)["services"]
    assert list(kafka_nodes(services)) == ["kafka"]


def test_three_nodes_form_one_quorum_each_with_its_own_data() -> None:
    services = merged()["services"]
    nodes = kafka_nodes(services)
    assert sorted(nodes) == ["kafka", "kafka-2", "kafka-3"]
    ids = {name: env["KAFKA_NODE_ID"] for name, env in nodes.items()}
    assert sorted(ids.values()) == [str(n) for n in range(1, NODES + 1)]
    voters = {f"{ids[name]}@{name}:9093" for name in nodes}
    volumes = set()
    for name, env in nodes.items():
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller", name
        assert set(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == voters, name
        assert "CONTROLLER://:9093" in env["KAFKA_LISTENERS"].split(","), name
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:{CLIENT_PORT}", name
        [mount] = [v for v in services[name]["volumes"] if v.endswith(":" + env["KAFKA_LOG_DIRS"])]
        volumes.add(mount.split(":")[0])
        assert services[name]["healthcheck"]["test"], name
    assert len({env["CLUSTER_ID"] for env in nodes.values()}) == 1
    assert len(volumes) == NODES  # no two nodes share a log folder
    assert volumes <= set(merged()["volumes"])


def test_a_broker_can_die_without_losing_an_acknowledged_write() -> None:
    for name, env in kafka_nodes(merged()["services"]).items():
        replicas = int(env["KAFKA_DEFAULT_REPLICATION_FACTOR"])
        in_sync = int(env["KAFKA_MIN_INSYNC_REPLICAS"])
        assert replicas == NODES, name
        assert 1 < in_sync < replicas, name  # acks=all needs 2 copies; one broker may be down
        assert int(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == replicas, name
        assert int(env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"]) == replicas, name
        assert int(env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"]) == in_sync, name
        assert env["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false", name


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_every_kafka_client_lists_the_three_brokers(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = merged()["services"]
    nodes = kafka_nodes(services)
    advertised = {
        re.sub(r"^PLAINTEXT://", "", env["KAFKA_ADVERTISED_LISTENERS"]) for env in nodes.values()
    }
    env = environment(services[name], shell_env())
    assert "KAFKA_BROKER" in env, name
    settings = settings_from(monkeypatch, SETTINGS[name], env)
    assert set(settings.kafka_bootstrap_servers) == advertised, name
    assert len(settings.kafka_bootstrap_servers) == NODES
    if "kafka" in BACKENDS[name]:
        assert settings.kafka_replication_factor == NODES  # the topics it creates
        waits_for = depends_on(services[name])
        for node in nodes:
            assert waits_for[node] == {"condition": "service_healthy"}, (name, node)
