"""``commercekit services up`` brings real servers up for development and takes them down."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from commercekit.testing.pytest_plugin import unavailable
from commercekit.testing.servers import RedisServer
from commercekit.testing.servers._base import tcp_open
from commercekit.testing.servers.redis import redis_command


def test_services_up_prints_urls_and_stops_everything_on_sigint(tmp_path: Path) -> None:
    reason = RedisServer.missing()
    if reason:
        unavailable(reason)
    env_file = tmp_path / "services.env"
    with subprocess.Popen(
        [
            sys.executable, "-m", "commercekit", "services", "up",
            "--only", "redis", "--workdir", str(tmp_path / "data"), "--env-file", str(env_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:  # fmt: skip
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("REDIS_URL=redis://127.0.0.1:")
        assert env_file.read_text() == line + "\n"
        port = int(line.rsplit(":", 1)[1].split("/")[0])
        assert redis_command("127.0.0.1", port, "PING") == b"+PONG"

        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    deadline = time.monotonic() + 5
    while tcp_open("127.0.0.1", port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not tcp_open("127.0.0.1", port)
