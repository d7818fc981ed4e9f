"""A real Apache Kafka broker in KRaft mode, run from the official jars.

The jars are resolved from Maven Central by the ``kafka-pom.xml`` shipped
beside this module (``bash .ci/setup`` does it) into ``.cache/kafka-<version>``
at the repository root, or into ``$COMMERCEKIT_KAFKA_LIBS``.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import subprocess
import uuid
from importlib import resources
from pathlib import Path

from commercekit.testing.servers._base import Server, ServerStartError, free_port, tcp_open

__all__ = ["KAFKA_VERSION", "KafkaServer", "kafka_libs_dir"]


def _pom_version() -> str:
    pom = resources.files(__package__).joinpath("kafka-pom.xml").read_text()
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom)
    assert match is not None, "kafka-pom.xml names kafka.version"
    return match.group(1)


KAFKA_VERSION = _pom_version()
"""The Kafka version the harness runs (read from ``kafka-pom.xml``)."""

_SETUP_HINT = (
    "resolve them with `bash .ci/setup` (Maven, from Maven Central), "
    "or point $COMMERCEKIT_KAFKA_LIBS at a folder of the kafka_2.13 jars"
)


def kafka_libs_dir() -> Path | None:
    """The folder holding ``kafka_2.13-<version>.jar`` and its dependencies, if any."""
    jar = f"kafka_2.13-{KAFKA_VERSION}.jar"
    override = os.environ.get("COMMERCEKIT_KAFKA_LIBS")
    if override:
        return Path(override) if (Path(override) / jar).is_file() else None
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        libs = folder / ".cache" / f"kafka-{KAFKA_VERSION}"
        if (libs / jar).is_file():
            return libs
    return None


class KafkaServer(Server):
    """One combined broker + controller node, KRaft mode, PLAINTEXT on loopback.

    Ready when a real client (aiokafka) receives cluster metadata naming
    the broker. Data survives `restart`, so a test can stop the broker in
    the middle of a flow and bring it back.

    Args:
        workdir: folder for the log segments, the config and the log.
        port: the client port; a free one by default.
        heap: the JVM's maximum heap (``-Xmx``).
    """

    name = "kafka"
    start_timeout = 90.0

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        port: int | None = None,
        heap: str = "768m",
    ) -> None:
        super().__init__(workdir, port=port)
        self.controller_port = free_port()
        self.heap = heap

    @classmethod
    def missing(cls) -> str | None:
        """Say how to get Java or the Kafka jars if either is missing."""
        if shutil.which("java") is None:
            return (
                "java is not on PATH: install a JDK 17 (`apt-get install openjdk-17-jre-headless`)"
            )
        if kafka_libs_dir() is None:
            return f"the Kafka {KAFKA_VERSION} jars were not found: {_SETUP_HINT}"
        try:
            import aiokafka  # noqa: F401, PLC0415 - only the readiness probe needs it
        except ImportError:
            return 'the readiness probe needs aiokafka: pip install "commercekit[kafka]"'
        return None

    @property
    def bootstrap_servers(self) -> str:
        """``127.0.0.1:<port>``, the value for ``bootstrap_servers``."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """``kafka://127.0.0.1:<port>``."""
        return f"kafka://{self.bootstrap_servers}"

    @property
    def _config_path(self) -> Path:
        return self.workdir / "server.properties"

    def _classpath(self) -> str:
        libs = kafka_libs_dir()
        assert libs is not None, "checked by missing()"
        return f"{libs}/*"  # expanded by the JVM, not by a shell

    def _properties(self) -> dict[str, str]:
        """The ``server.properties`` of this node."""
        return {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{self.host}:{self.controller_port}",
            "listeners": (
                f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.workdir / "data"),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "3",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "log.flush.interval.messages": "9223372036854775807",
            # The log cleaner takes its dedupe buffer (128 MiB by default) from the heap
            # when it starts; a test broker's compacted topics are a few kilobytes.
            "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
        }

    def _write_config(self) -> None:
        props = self._properties()
        self._config_path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.workdir / "log4j.properties").write_text(
            "log4j.rootLogger=WARN, stdout\n"
            "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
            "log4j.logger.kafka.server.KafkaRaftServer=INFO\n"
            "log4j.logger.kafka.server.BrokerServer=INFO\n"
        )

    def _java(self, main_class: str, *args: str) -> list[str]:
        return [
            "java",
            f"-Xmx{self.heap}",
            "-Xms128m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{self.workdir / 'log4j.properties'}",
            "-cp",
            self._classpath(),
            main_class,
            *args,
        ]

    def _cluster_id(self) -> str:
        return new_cluster_id()

    def _prepare(self) -> None:
        self._write_config()
        cluster_id = self._cluster_id()
        result = subprocess.run(
            self._java(
                "kafka.tools.StorageTool",
                "format",
                "--cluster-id", cluster_id,
                "--config", str(self._config_path),
                "--ignore-formatted",
            ),
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise ServerStartError(f"kafka storage format failed:\n{result.stdout}{result.stderr}")

    def _command(self) -> list[str]:
        # The port may have changed since _prepare (see Server.start).
        self._write_config()
        return self._java("kafka.Kafka", str(self._config_path))

    def _is_ready(self) -> bool:
        if not tcp_open(self.host, self.port):
            return False
        return asyncio.run(_has_metadata(self.bootstrap_servers))


def new_cluster_id() -> str:
    """A random KRaft cluster id (never one ``kafka-storage`` would read as an option)."""
    cluster_id = "-"
    while cluster_id.startswith("-"):
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    return cluster_id


async def _has_metadata(bootstrap_servers: str) -> bool:
    """Ask the broker for cluster metadata with a real client."""
    from aiokafka.admin import AIOKafkaAdminClient  # noqa: PLC0415 - optional extra

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=3000)
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
    except Exception:
        return False
    finally:
        await admin.close()
    return bool(cluster.get("brokers"))
