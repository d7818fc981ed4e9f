"""`RedisClusterServer`'s layout, without starting it (the real one runs in tests/integration)."""

from __future__ import annotations

from pathlib import Path

import pytest

from commercekit.testing.servers import RedisClusterServer


@pytest.mark.parametrize(("masters", "replicas", "nodes"), [(3, 0, 3), (3, 1, 6), (4, 2, 12)])
def test_a_cluster_has_a_node_per_master_and_per_replica(
    tmp_path: Path, masters: int, replicas: int, nodes: int
) -> None:
    cluster = RedisClusterServer(tmp_path, masters=masters, replicas=replicas)
    assert len(cluster.nodes) == nodes
    assert len({node.port for node in cluster.nodes}) == nodes
    assert len({node.workdir for node in cluster.nodes}) == nodes
    assert cluster.url == f"redis://127.0.0.1:{cluster.nodes[0].port}"  # none runs: the first


def test_replicas_default_to_none(tmp_path: Path) -> None:
    cluster = RedisClusterServer(tmp_path)
    assert cluster.replicas == 0
    assert len(cluster.nodes) == 3


@pytest.mark.parametrize(("masters", "replicas"), [(2, 0), (3, -1)])
def test_an_impossible_layout_is_refused(tmp_path: Path, masters: int, replicas: int) -> None:
    with pytest.raises(ValueError, match=r"masters|replicas"):
        RedisClusterServer(tmp_path, masters=masters, replicas=replicas)
