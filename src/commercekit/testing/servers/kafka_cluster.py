"""Several Kafka brokers in one KRaft cluster, to lose one and see what survives.

```python
with KafkaCluster(workdir, brokers=3) as cluster:
    bus = KafkaEventBus(cluster.bootstrap_servers)
    ...
    leaders = await cluster.leaders("payments")   # partition -> node id
    cluster.kill(leaders[0])                       # SIGKILL, as a crash would
    await asyncio.to_thread(cluster.start_node, leaders[0])  # back, same port and data
```

Each node is a broker and a controller (so a majority of the nodes must
run for the cluster to answer), on loopback ports of its own, with its
log segments in its own folder under ``workdir``. Topics get
``min(brokers, 3)`` replicas and need 2 of them in sync (1 with fewer
than 3 brokers), the consumer offsets and the transaction state too.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from commercekit.errors import ConfigurationError
from commercekit.testing.servers._base import ServerStartError, free_port, tcp_open
from commercekit.testing.servers.kafka import KafkaServer, new_cluster_id

__all__ = ["KafkaCluster"]

_ADMIN_ATTEMPTS = 10

BROKER_SESSION_TIMEOUT_MS = 3000
"""How long the controllers wait for a silent broker before they fence it and move its
leaderships (Kafka's default is 9 s; a test wants the failover sooner)."""


class _ClusterNode(KafkaServer):
    """One node of a `KafkaCluster`: broker and controller, node id `node_id`."""

    name = "kafka"

    def __init__(self, cluster: KafkaCluster, node_id: int, workdir: Path, heap: str) -> None:
        super().__init__(workdir, port=free_port(), heap=heap)
        self.cluster = cluster
        self.node_id = node_id
        self.awaiting_quorum = False
        """Set while the whole cluster starts: a lone node cannot answer before a quorum."""

    def _cluster_id(self) -> str:
        return self.cluster.cluster_id

    def _properties(self) -> dict[str, str]:
        replicas = self.cluster.replication_factor
        in_sync = str(self.cluster.min_insync_replicas)
        return {
            **super()._properties(),
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.cluster.quorum_voters,
            "default.replication.factor": str(replicas),
            "min.insync.replicas": in_sync,
            "offsets.topic.replication.factor": str(replicas),
            "transaction.state.log.replication.factor": str(replicas),
            "transaction.state.log.min.isr": in_sync,
            "unclean.leader.election.enable": "false",
            "broker.session.timeout.ms": str(BROKER_SESSION_TIMEOUT_MS),
            "broker.heartbeat.interval.ms": "500",
            "replica.lag.time.max.ms": "5000",
        }

    def _is_ready(self) -> bool:
        if self.awaiting_quorum:
            return True  # spawned; `KafkaCluster.start` waits for the whole cluster
        return self.sees({self.node_id})

    def sees(self, node_ids: set[int]) -> bool:
        """Whether this node answers cluster metadata naming (at least) these brokers."""
        if not tcp_open(self.host, self.port):
            return False
        return asyncio.run(_broker_ids(self.bootstrap_servers)) >= node_ids

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<KafkaCluster node {self.node_id} {self.url} {state}>"


class KafkaCluster:
    """`brokers` combined broker + controller nodes in one KRaft cluster, on loopback.

    Every node runs as a `KafkaServer` of its own (``nodes``), so a test can
    `kill` one with SIGKILL in the middle of a flow, and `start_node` it
    again on the same ports with the same data. The brokers are configured
    for durability: ``default.replication.factor`` ``min(brokers, 3)``,
    ``min.insync.replicas`` 2 (1 below 3 brokers), the same for the
    consumer offsets and the transaction state, no unclean leader
    election; and for a quick failover: a silent broker is fenced after
    `BROKER_SESSION_TIMEOUT_MS`.

    Args:
        workdir: folder of the nodes' folders (``node-1``, ``node-2``...).
        brokers: how many nodes (at least 1).
        heap: each JVM's maximum heap (``-Xmx``).
    """

    start_timeout = 120.0

    def __init__(
        self, workdir: str | os.PathLike[str], *, brokers: int = 3, heap: str = "256m"
    ) -> None:
        if brokers < 1:
            raise ConfigurationError(f"a Kafka cluster needs at least one broker, not {brokers}")
        self.workdir = Path(workdir)
        self.cluster_id = new_cluster_id()
        self.replication_factor = min(brokers, 3)
        """Replicas of each partition (``default.replication.factor``)."""
        self.min_insync_replicas = 2 if self.replication_factor >= 3 else 1
        """Replicas that must have a write before it is acknowledged (``acks=all``)."""
        self.nodes: list[KafkaServer] = [
            _ClusterNode(self, node_id, self.workdir / f"node-{node_id}", heap)
            for node_id in range(1, brokers + 1)
        ]
        """The nodes, node id 1 first."""

    @classmethod
    def missing(cls) -> str | None:
        """Say how to get Java or the Kafka jars if either is missing."""
        return KafkaServer.missing()

    # ------------------------------------------------------------ addresses
    @property
    def quorum_voters(self) -> str:
        """``controller.quorum.voters``: ``1@127.0.0.1:<port>,2@...``."""
        return ",".join(f"{n.node_id}@{n.host}:{n.controller_port}" for n in self._nodes)

    @property
    def bootstrap_servers(self) -> str:
        """Every node's client address, comma-separated (the value for ``bootstrap_servers``)."""
        return ",".join(node.bootstrap_servers for node in self.nodes)

    @property
    def url(self) -> str:
        """``kafka://127.0.0.1:<port>,127.0.0.1:<port>,...``."""
        return f"kafka://{self.bootstrap_servers}"

    def node(self, node_id: int) -> KafkaServer:
        """The node with this node id (1 to `brokers`)."""
        for node in self._nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(f"no Kafka node {node_id}; the nodes are 1 to {len(self.nodes)}")

    @property
    def running(self) -> bool:
        """Whether every node's process is alive."""
        return all(node.running for node in self.nodes)

    @property
    def _nodes(self) -> list[_ClusterNode]:
        return [node for node in self.nodes if isinstance(node, _ClusterNode)]

    # ------------------------------------------------------------ lifecycle
    def start(self) -> Self:
        """Start every node that is not running; wait until each is a broker of the cluster.

        The nodes are spawned together (a controller alone has no quorum to
        answer with), then each must answer metadata naming all the brokers.
        If one fails, those started are stopped.

        Raises:
            ServerNotAvailable: Java or the Kafka jars are missing.
            ServerStartError: a node exited, or the cluster did not form in time.
        """
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        waiting = [node for node in self._nodes if not node.running]
        for node in waiting:
            node.awaiting_quorum = True
            try:
                node.start()
            finally:
                node.awaiting_quorum = False
        wanted = {node.node_id for node in self._nodes}
        deadline = time.monotonic() + self.start_timeout
        while waiting:
            node = waiting[0]
            if not node.running:
                raise ServerStartError(
                    f"kafka node {node.node_id} exited while the cluster formed; "
                    f"last lines of {node.log_path}:\n{node.log_tail()}"
                )
            if node.sees(wanted):
                waiting.pop(0)
                continue
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"the Kafka cluster did not form in {self.start_timeout:.0f}s; "
                    f"last lines of {node.log_path}:\n{node.log_tail()}"
                )
            time.sleep(0.2)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every node gracefully (then by force, after `timeout` seconds); the data stays.

        All at once: one by one, the last nodes would wait for a quorum of
        controllers that is already gone before they could shut down.
        """
        with ThreadPoolExecutor(max_workers=len(self.nodes)) as pool:
            list(pool.map(lambda node: node.stop(timeout), self.nodes))

    def kill(self, node_id: int) -> None:
        """End one node with SIGKILL, the way a crash would; its data stays."""
        self.node(node_id).kill()

    def start_node(self, node_id: int) -> None:
        """Start one node again (same ports, same data); wait until it is a broker again.

        The other nodes must hold a quorum. It blocks (the readiness probe
        runs its own event loop): from async code, call it in a thread.
        """
        self.node(node_id).start()

    # ------------------------------------------------------------ metadata
    async def leaders(self, topic: str) -> dict[int, int]:
        """Each partition of `topic` with the node id of its leader (-1: none).

        As a live node reports it: a killed leader stays named until the controllers fence it (after
        `BROKER_SESSION_TIMEOUT_MS`); poll for the change.
        """
        found: dict[int, int] = {}
        for partition in await self.partitions(topic):
            found[int(partition["partition"])] = int(partition["leader"])
        return found

    async def in_sync(self, topics: Iterable[str]) -> bool:
        """Whether every partition of `topics` has a leader and all its replicas in sync."""
        for topic in topics:
            partitions = await self.partitions(topic)
            if not partitions:
                return False
            for partition in partitions:
                replicas = set(partition["replicas"])
                if partition["leader"] < 0 or set(partition["isr"]) != replicas:
                    return False
        return True

    async def coordinator(self, group: str) -> int:
        """The node id of the broker that coordinates consumer group `group` right now."""
        node_id: int = await self._ask(lambda admin: admin.find_coordinator(group))
        return node_id

    async def partitions(self, topic: str) -> list[dict[str, Any]]:
        """The partitions of `topic` as a live node describes them; [] while it knows none.

        Each is the metadata's dict: ``partition``, ``leader`` (a node id, -1
        for none), ``replicas``, ``isr`` (the node ids in sync), ``error_code``.
        """
        described = await self._ask(lambda admin: admin.describe_topics([topic]))
        if not described or described[0]["error_code"] != 0:
            return []
        partitions: list[dict[str, Any]] = described[0]["partitions"]
        return partitions

    async def _ask(self, request: Callable[[Any], Awaitable[Any]]) -> Any:
        """Make an admin request of the live nodes, again on another if one fails."""
        from aiokafka.admin import AIOKafkaAdminClient  # noqa: PLC0415 - optional extra
        from aiokafka.errors import KafkaError  # noqa: PLC0415 - optional extra

        live = [node.bootstrap_servers for node in self.nodes if node.running]
        if not live:
            raise ServerStartError("no node of the Kafka cluster is running")
        for attempt in range(_ADMIN_ATTEMPTS):
            admin = AIOKafkaAdminClient(bootstrap_servers=live, request_timeout_ms=5000)
            try:
                await admin.start()
                # The admin asks a random broker of its metadata, maybe one just killed.
                return await request(admin)
            except KafkaError:
                if attempt + 1 == _ADMIN_ATTEMPTS:
                    raise
                await asyncio.sleep(0.2)
            finally:
                await admin.close()
        raise AssertionError("unreachable")  # pragma: no cover

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        up = sum(1 for node in self.nodes if node.running)
        return f"<KafkaCluster {self.url} {up}/{len(self.nodes)} running>"


async def _broker_ids(bootstrap_servers: str) -> set[int]:
    """The node ids of the brokers the cluster metadata names (none if it cannot be read)."""
    from aiokafka.admin import AIOKafkaAdminClient  # noqa: PLC0415 - optional extra

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=3000)
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
    except Exception:
        return set()
    finally:
        await admin.close()
    return {int(broker["node_id"]) for broker in cluster.get("brokers", [])}
