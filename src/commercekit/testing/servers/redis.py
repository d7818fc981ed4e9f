"""A real ``redis-server`` (Redis 7) on a loopback port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
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


class RedisClusterServer:
    """A real Redis Cluster: `masters` ``redis-server`` nodes joined by ``redis-cli``.

    No replicas; each master owns a share of the 16,384 slots. Use it with
    ``redis.asyncio.RedisCluster.from_url(cluster.url)``.

    Args:
        workdir: folder for the nodes' data and logs.
        masters: how many master nodes (at least 3, as Redis requires).
    """

    name = "redis-cluster"
    start_timeout = 30.0

    def __init__(self, workdir: str | os.PathLike[str], *, masters: int = 3) -> None:
        if masters < 3:
            raise ValueError("a Redis Cluster needs at least 3 masters")
        root = Path(workdir)
        self.nodes = [
            RedisServer(
                root / f"node{i}",
                extra_args=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "2000",
                    # the bus port would be port + 10000, which may not exist
                    "--cluster-port",
                    str(free_port()),
                ],
            )
            for i in range(masters)
        ]

    @classmethod
    def missing(cls) -> str | None:
        """Say how to install ``redis-server`` and ``redis-cli`` if either is missing."""
        if shutil.which("redis-cli") is None:
            return f"redis-cli is not on PATH: {_INSTALL_HINT}"
        return RedisServer.missing()

    @property
    def url(self) -> str:
        """A startup node's URL: ``redis://127.0.0.1:<port>``."""
        return f"redis://{self.nodes[0].host}:{self.nodes[0].port}"

    @property
    def running(self) -> bool:
        """Whether every node is running."""
        return all(node.running for node in self.nodes)

    def start(self) -> RedisClusterServer:
        """Start the nodes, create the cluster and wait until every slot is served."""
        reason = self.missing()
        if reason is not None:
            raise ServerNotAvailable(reason)
        try:
            for node in self.nodes:
                node.start()
            addresses = [f"{node.host}:{node.port}" for node in self.nodes]
            result = subprocess.run(
                ["redis-cli", "--cluster", "create", *addresses,
                 "--cluster-replicas", "0", "--cluster-yes"],
                capture_output=True, text=True, check=False, timeout=self.start_timeout,
            )  # fmt: skip
            if result.returncode != 0:
                raise ServerStartError(f"redis-cli --cluster create failed:\n{result.stdout}")
            deadline = time.monotonic() + self.start_timeout
            while not (all(self._cluster_ok(node) for node in self.nodes) and self._agreed()):
                if time.monotonic() > deadline:
                    raise ServerStartError("the Redis Cluster did not reach cluster_state:ok")
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise
        return self

    def _agreed(self) -> bool:
        """Whether every node has the same slot map (clients then see no MOVED)."""
        node = self.nodes[0]
        check = subprocess.run(
            ["redis-cli", "--cluster", "check", f"{node.host}:{node.port}"],
            capture_output=True, text=True, check=False, timeout=10,
        )  # fmt: skip
        return check.returncode == 0 and "All nodes agree about slots configuration" in check.stdout

    @staticmethod
    def _cluster_ok(node: RedisServer) -> bool:
        with socket.create_connection((node.host, node.port), timeout=1.0) as sock:
            sock.sendall(b"CLUSTER INFO\r\n")
            reply = b""
            while b"cluster_state:" not in reply or not reply.endswith(b"\r\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
        return b"cluster_state:ok" in reply

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> RedisClusterServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
