"""A real ``redis-server`` (Redis 7) on a loopback port."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Sequence

from commercekit.testing.servers._base import Server

__all__ = ["RedisServer"]

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
