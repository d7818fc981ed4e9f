"""A real ``redis-server`` (Redis 7) on a loopback port."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from commercekit.testing.servers._base import (
    Server,
    ServerNotAvailable,
    ServerStartError,
    free_port,
)

__all__ = ["RedisClusterServer", "RedisServer"]

_INSTALL_HINT = "install it with `apt-get install redis-server` (or run `bash .ci/setup`)"


def redis_command(host: str, port: int, *args: str, timeout: float = 1.0) -> bytes:
    """Send one inline command over a raw socket and return the first reply line."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(" ".join(args).encode() + b"\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
        return reply.strip()


class RedisServer(Server):
    """``redis-server`` with its data in `workdir`.

    Args:
        workdir: folder for the log and, when `persistent`, the append-only file.
        port: TCP port; a free one by default.
        persistent: keep data across `restart` with an fsync-every-second AOF,
            as a production Redis would; by default a restart starts empty.
        extra_args: more ``--name value`` options for ``redis-server``.
    """

    name = "redis"

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        port: int | None = None,
        persistent: bool = False,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(workdir, port=port)
        self.persistent = persistent
        self.extra_args = tuple(extra_args)

    @classmethod
    def missing(cls) -> str | None:
        """Say how to install ``redis-server`` if it is not on PATH."""
        if shutil.which("redis-server") is None:
            return f"redis-server is not on PATH: {_INSTALL_HINT}"
        return None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://{self.host}:{self.port}/0"

    def _command(self) -> list[str]:
        return [
            "redis-server",
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self.workdir),
            "--save", "",
            "--appendonly", "yes" if self.persistent else "no",
            "--protected-mode", "no",
            "--daemonize", "no",
            *self.extra_args,
        ]  # fmt: skip

    def _is_ready(self) -> bool:
        try:
            return redis_command(self.host, self.port, "PING") == b"+PONG"
        except OSError:
            return False


class _ClusterNode(RedisServer):
    """A cluster node, its bus port picked when it first starts (and kept for its restarts).

    The bus port would be port + 10000, which may not exist. Picked when the
    node starts, not when it is made, and picked again when that start finds
    it taken: another process may bind it in between.
    """

    bus_port: int | None = None
    _started = False

    def _command(self) -> list[str]:
        if self.bus_port is None:
            self.bus_port = free_port()
        return [*super()._command(), "--cluster-port", str(self.bus_port)]

    def _spawn_and_wait(self) -> None:
        try:
            super()._spawn_and_wait()
        except ServerStartError:
            if not self._started:
                self.bus_port = None  # the start's next attempt picks another
            raise
        self._started = True


class RedisClusterServer:
    """A real Redis Cluster: `masters` ``redis-server`` nodes joined by ``redis-cli``.

    Each master owns a share of the 16,384 slots; with `replicas`, each has
    that many replicas (``--cluster-replicas``), in sync before `start`
    returns. Use it with ``redis.asyncio.RedisCluster.from_url(cluster.url)``.

    A failover, as a crash causes one::

        old = cluster.master_of("stock:SKU-1")
        cluster.kill(old)                              # SIGKILL
        new = cluster.wait_for_failover(old)           # a replica took its slots
        cluster.revive(old)                            # back, as new's replica

    Args:
        workdir: folder for the nodes' data and logs.
        masters: how many master nodes (at least 3, as Redis requires).
        replicas: replicas per master (0, the default: none).
    """

    name = "redis-cluster"
    start_timeout = 30.0

    def __init__(
        self, workdir: str | os.PathLike[str], *, masters: int = 3, replicas: int = 0
    ) -> None:
        if masters < 3:
            raise ValueError("a Redis Cluster needs at least 3 masters")
        if replicas < 0:
            raise ValueError(f"replicas must be 0 or more, got {replicas}")
        self.replicas = replicas
        root = Path(workdir)
        self.nodes: list[RedisServer] = [
            _ClusterNode(
                root / f"node{i}",
                extra_args=["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"],
            )
            for i in range(masters * (1 + replicas))
        ]

    @classmethod
    def missing(cls) -> str | None:
        """Say how to install ``redis-server`` and ``redis-cli`` if either is missing."""
        if shutil.which("redis-cli") is None:
            return f"redis-cli is not on PATH: {_INSTALL_HINT}"
        return RedisServer.missing()

    @property
    def url(self) -> str:
        """A startup node's URL: ``redis://127.0.0.1:<port>`` (a running node's)."""
        node = next((node for node in self.nodes if node.running), self.nodes[0])
        return f"redis://{node.host}:{node.port}"

    @property
    def running(self) -> bool:
        """Whether every node is running."""
        return all(node.running for node in self.nodes)

    def start(self) -> RedisClusterServer:
        """Start the nodes, create the cluster and wait until every slot is served.

        With replicas, also wait until each replica is in sync with its master.
        """
        reason = self.missing()
        if reason is not None:
            raise ServerNotAvailable(reason)
        try:
            for node in self.nodes:
                node.start()
            addresses = [f"{node.host}:{node.port}" for node in self.nodes]
            result = subprocess.run(
                ["redis-cli", "--cluster", "create", *addresses,
                 "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                capture_output=True, text=True, check=False, timeout=self.start_timeout,
            )  # fmt: skip
            if result.returncode != 0:
                raise ServerStartError(f"redis-cli --cluster create failed:\n{result.stdout}")
            self._wait(self._healthy, "reach cluster_state:ok with every replica in sync")
        except BaseException:
            self.stop()
            raise
        return self

    # ------------------------------------------------------------ topology
    def _wait(self, done: Callable[[], bool], what: str, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (self.start_timeout if timeout is None else timeout)
        while True:
            with contextlib.suppress(OSError):
                if done():
                    return
            if time.monotonic() > deadline:
                raise ServerStartError(f"the Redis Cluster did not {what}")
            time.sleep(0.1)

    def _live(self) -> list[RedisServer]:
        return [node for node in self.nodes if node.running]

    def _healthy(self) -> bool:
        live = self._live()
        if not all(self._cluster_ok(node) for node in live) or not self._agreed():
            return False
        for node in live:
            info = _info(node, "replication")
            if info.get("master_link_status", "up") != "up":  # a replica still syncing
                return False
            followers = [v for k, v in info.items() if k.startswith("slave") and k[5:].isdigit()]
            if any("state=online" not in follower for follower in followers):
                return False  # a master still sending its copy
        return True

    def _node_at(self, address: str) -> RedisServer | None:
        return next((n for n in self.nodes if f"{n.host}:{n.port}" == address), None)

    def _topology(self) -> list[tuple[RedisServer, str, str, list[tuple[int, int]]]]:
        """Per known node, as a live node sees it: (node, id, master id or "-", slot ranges)."""
        reply = _call(self._live()[0], "CLUSTER", "NODES").decode()
        nodes = []
        for line in reply.splitlines():
            fields = line.split()
            node = self._node_at(fields[1].split("@")[0])
            if node is None:
                continue
            ranges = []
            for spec in fields[8:]:
                if spec.startswith("["):  # a slot being migrated
                    continue
                first, _, last = spec.partition("-")
                ranges.append((int(first), int(last or first)))
            master = "-" if "master" in fields[2].split(",") else fields[3]
            nodes.append((node, fields[0], master, ranges))
        return nodes

    def keyslot(self, key: str) -> int:
        """The slot of `key` (``CLUSTER KEYSLOT``)."""
        return int(_call(self._live()[0], "CLUSTER", "KEYSLOT", key))

    def master_of_slot(self, slot: int) -> RedisServer:
        """The node that serves `slot` now, as the cluster sees it."""
        for node, _id, master, ranges in self._topology():
            if master == "-" and any(first <= slot <= last for first, last in ranges):
                return node
        raise LookupError(f"no master serves slot {slot}")

    def master_of(self, key: str) -> RedisServer:
        """The node that serves `key`'s slot now."""
        return self.master_of_slot(self.keyslot(key))

    def replicas_of(self, master: RedisServer) -> list[RedisServer]:
        """The nodes that replicate `master`, as the cluster sees it."""
        topology = self._topology()
        ids = {node: node_id for node, node_id, _m, _r in topology}
        return [node for node, _id, of, _r in topology if of == ids.get(master)]

    def kill(self, node: RedisServer) -> None:
        """SIGKILL one node, as a crash would (its replica takes over after the node timeout)."""
        node.kill()

    def wait_for_failover(self, old: RedisServer, timeout: float = 30.0) -> RedisServer:
        """Wait until a replica of the dead master `old` serves its slots; return it.

        Waits until every live node says ``cluster_state:ok`` and agrees on
        the slot map, and the promoted node serves every slot `old` served.
        """
        slots = [first for _n, _id, _m, ranges in self._topology() if _n is old
                 for first, _last in ranges]  # fmt: skip
        if not slots:
            raise LookupError(f"{old} served no slots")
        promoted: list[RedisServer] = []

        def taken_over() -> bool:
            if not (all(self._cluster_ok(n) for n in self._live()) and self._agreed()):
                return False
            owners = {self.master_of_slot(slot) for slot in slots}
            promoted[:] = list(owners)
            return len(owners) == 1 and old not in owners

        self._wait(taken_over, f"fail {old} over to a replica", timeout)
        return promoted[0]

    def revive(self, node: RedisServer, timeout: float = 30.0) -> None:
        """Start a killed node again; it rejoins as a replica and syncs before this returns.

        The node comes back empty (no persistence) and takes a full copy
        from the master that replaced it.
        """
        node.start()
        self._wait(self._healthy, f"take {node} back in sync", timeout)

    def _agreed(self) -> bool:
        """Whether every live node has the same slot map (clients then see no MOVED)."""
        node = self._live()[0]
        check = subprocess.run(
            ["redis-cli", "--cluster", "check", f"{node.host}:{node.port}"],
            capture_output=True, text=True, check=False, timeout=10,
        )  # fmt: skip
        return check.returncode == 0 and "All nodes agree about slots configuration" in check.stdout

    @staticmethod
    def _cluster_ok(node: RedisServer) -> bool:
        return _info(node, "cluster").get("cluster_state") == "ok"

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> RedisClusterServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _call(node: RedisServer, *args: str, timeout: float = 5.0) -> bytes:
    """One command in RESP on a raw socket; the reply's payload (a bulk string or a line)."""
    packed = b"*%d\r\n" % len(args) + b"".join(
        b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args
    )
    with socket.create_connection((node.host, node.port), timeout=timeout) as sock:
        sock.sendall(packed)
        reply = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                raise OSError(f"{node} closed the connection")
            reply += chunk
            head, sep, rest = reply.partition(b"\r\n")
            if not sep:
                continue
            if head[:1] != b"$":
                if head[:1] == b"-":
                    raise OSError(f"{node} answered {head.decode()}")
                return head[1:]
            size = int(head[1:])
            if size < 0:
                return b""
            if len(rest) >= size + 2:
                return rest[:size]


def _info(node: RedisServer, section: str) -> dict[str, str]:
    """``INFO <section>`` (or ``CLUSTER INFO`` for "cluster") as a dict."""
    args = ("CLUSTER", "INFO") if section == "cluster" else ("INFO", section)
    text = _call(node, *args).decode()
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
