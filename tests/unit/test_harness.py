"""The harness's process handling, checked with small Python servers."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from importlib import resources
from pathlib import Path

import pytest

from commercekit.errors import ConfigurationError
from commercekit.testing import pytest_plugin
from commercekit.testing.servers import (
    KAFKA_VERSION,
    KafkaCluster,
    KafkaServer,
    NginxServer,
    PostgresServer,
    RedisServer,
    Server,
    ServerNotAvailable,
    ServerStartError,
    ServiceStack,
    free_port,
)
from commercekit.testing.servers._base import tcp_open
from commercekit.testing.servers.nginx import render_template

# Listens on argv[1]; also forks a grandchild that would outlive a careless stop.
TCP_SERVER = """
import os, socket, sys, time
if os.fork() == 0:
    time.sleep(3600)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
with open("child.pid", "w") as f:
    f.write(str(os.getpid()))
while True:
    s.accept()[0].close()
"""


class PythonServer(Server):
    name = "python"
    start_timeout = 10.0
    script = TCP_SERVER

    @classmethod
    def missing(cls) -> str | None:
        return None

    @property
    def url(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    def _command(self) -> list[str]:
        return [sys.executable, "-c", self.script, str(self.port)]

    def _is_ready(self) -> bool:
        return tcp_open(self.host, self.port)


class SimpleServer(PythonServer):
    """Like PythonServer, without the forked grandchild."""

    script = TCP_SERVER.replace("if os.fork() == 0:\n    time.sleep(3600)\n", "")


class CrashingServer(PythonServer):
    script = "import sys; print('boom: no config'); sys.exit(3)"


class SilentServer(PythonServer):
    start_timeout = 0.5
    script = "import time; time.sleep(60)"


class AbsentServer(PythonServer):
    @classmethod
    def missing(cls) -> str | None:
        return "absent-server is not on PATH: apt-get install absent"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); read its state
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_start_waits_until_ready_and_stop_ends_the_whole_group(tmp_path: Path) -> None:
    server = PythonServer(tmp_path)
    with server:
        assert server.running
        assert tcp_open("127.0.0.1", server.port)
        pid = server.pid
        assert pid is not None
        assert server.start() is server  # idempotent
    assert not server.running
    assert not _alive(pid)
    # the forked grandchild shared the process group, so it is gone too
    deadline = time.monotonic() + 5
    while any(_alive(int(p)) for p in _group_members(pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _group_members(pid) == []


def _group_members(pgid: int) -> list[str]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(entry.name)
    return members


def test_restart_keeps_the_port(tmp_path: Path) -> None:
    with PythonServer(tmp_path) as server:
        port = server.port
        first = server.pid
        server.restart()
        assert server.port == port
        assert server.pid != first
        assert tcp_open("127.0.0.1", port)


def test_kill_is_a_crash(tmp_path: Path) -> None:
    server = PythonServer(tmp_path).start()
    pid = server.pid
    assert pid is not None
    server.kill()
    assert not server.running
    assert not _alive(pid)
    server.start()  # and it comes back
    assert server.running
    server.stop()


def test_a_server_that_exits_reports_its_log(tmp_path: Path) -> None:
    with pytest.raises(ServerStartError, match=r"exited with code 3(.|\n)*boom: no config"):
        CrashingServer(tmp_path).start()


def test_a_server_that_never_answers_times_out_and_is_killed(tmp_path: Path) -> None:
    server = SilentServer(tmp_path)
    with pytest.raises(ServerStartError, match="not ready after"):
        server.start()
    assert not server.running


def test_a_missing_binary_is_reported_before_starting(tmp_path: Path) -> None:
    with pytest.raises(ServerNotAvailable, match="apt-get install absent"):
        AbsentServer(tmp_path).start()
    assert not (tmp_path / "python.log").exists()


@pytest.mark.parametrize(
    ("server", "hint"),
    [
        (RedisServer, "apt-get install redis-server"),
        (PostgresServer, "apt-get install postgresql"),
        (NginxServer, "apt-get install nginx-light"),
        (KafkaServer, "install a JDK"),
    ],
)
def test_missing_binaries_say_how_to_install_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, server: type[Server], hint: str
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("COMMERCEKIT_PG_BINDIR", str(tmp_path))
    monkeypatch.setattr("commercekit.testing.servers.postgres._DEBIAN_ROOT", tmp_path / "none")
    monkeypatch.setattr("shutil.which", lambda *_args, **_kw: None)
    reason = server.missing()
    assert reason is not None
    assert hint in reason


def test_kafka_jars_missing_says_how_to_resolve_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("COMMERCEKIT_KAFKA_LIBS", str(tmp_path))
    reason = KafkaServer.missing()
    assert reason is not None
    assert "bash .ci/setup" in reason


def test_kafka_version_comes_from_the_pom() -> None:
    assert re.fullmatch(r"3\.9\.\d+", KAFKA_VERSION)
    pom = resources.files("commercekit.testing.servers").joinpath("kafka-pom.xml").read_text()
    assert f"<kafka.version>{KAFKA_VERSION}</kafka.version>" in pom


def test_render_template_fills_placeholders_and_keeps_nginx_variables() -> None:
    text = "listen ${PORT}; proxy_pass http://${UPSTREAM}; set $x $host; ${lower}"
    assert (
        render_template(text, {"PORT": "8080", "UPSTREAM": "127.0.0.1:9000"})
        == "listen 8080; proxy_pass http://127.0.0.1:9000; set $x $host; ${lower}"
    )


def test_render_template_refuses_an_unfilled_placeholder() -> None:
    with pytest.raises(ConfigurationError, match="UPSTREAM"):
        render_template("proxy_pass http://${UPSTREAM};", {"PORT": "1"})


def test_service_stack_rejects_unknown_services(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="mongodb"):
        ServiceStack(tmp_path, services=["redis", "mongodb"])


def test_service_stack_env_names_each_service(tmp_path: Path) -> None:
    stack = ServiceStack(tmp_path, services=["redis", "postgres"])
    assert stack.redis is not None
    assert stack.postgres is not None
    assert stack.env() == {
        "REDIS_URL": stack.redis.url,
        "DATABASE_URL": stack.postgres.async_url,
    }
    assert stack.env()["DATABASE_URL"].startswith("postgresql+asyncpg://postgres@127.0.0.1:")


@pytest.mark.parametrize("value", ["true", "1", "TRUE", "yes"])
def test_a_missing_server_fails_under_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="CI=true and a required server is missing"):
        pytest_plugin.unavailable("redis-server is not on PATH")


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_a_missing_server_skips_outside_ci(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.skip.Exception, match="redis-server is not on PATH"):
        pytest_plugin.unavailable("redis-server is not on PATH")


def test_pdeathsig_ends_the_server_when_its_parent_dies(tmp_path: Path) -> None:
    """A harness process killed by SIGKILL leaves no server behind."""
    script = (
        "import sys, time\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from tests.unit.test_harness import SimpleServer\n"
        "s = SimpleServer(sys.argv[2]).start()\n"
        "print(s.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script, str(Path(__file__).parents[2]), str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    ) as parent:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _alive(child)
        parent.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def test_a_server_started_from_a_worker_thread_outlives_that_thread(tmp_path: Path) -> None:
    server = SimpleServer(tmp_path)
    starter = threading.Thread(target=server.start)
    starter.start()
    starter.join()
    time.sleep(0.3)  # PDEATHSIG, had it been set, would have fired by now
    assert server.running
    server.stop()


def _mebibytes(size: str) -> int:
    number, unit = int(size[:-1]), size[-1].lower()
    return number * {"k": 1, "m": 1024, "g": 1024 * 1024}[unit] // 1024


@pytest.mark.parametrize("brokers", [1, 3])
def test_kafka_heap_leaves_room_beside_the_log_cleaner_buffer(tmp_path: Path, brokers: int) -> None:
    # The cleaner takes its whole dedupe buffer from the heap when it starts: at
    # Kafka's 128 MiB in a 256 MiB heap a restarted cluster node ran out of memory.
    nodes = (
        [KafkaServer(tmp_path)] if brokers == 1 else KafkaCluster(tmp_path, brokers=brokers).nodes
    )
    for node in nodes:
        buffer = int(node._properties().get("log.cleaner.dedupe.buffer.size", 128 << 20))
        assert buffer >> 20 <= _mebibytes(node.heap) // 8
