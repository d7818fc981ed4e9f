"""Real servers for tests, benchmarks and local development, without Docker.

Each server runs from its own binary on a free loopback port, keeps its data
in a folder you give it, and is stopped (with its whole process group) by
`Server.stop`, by the context manager, or at interpreter exit::

    from commercekit.testing.servers import RedisServer

    with RedisServer(workdir) as redis:
        print(redis.url)          # redis://127.0.0.1:40123/0

`KafkaCluster` runs several Kafka brokers in one cluster, to lose one;
`ServiceStack` starts several servers at once; ``commercekit services up`` runs one
from the shell and prints the URLs.
"""

from commercekit.testing.servers._base import (
    Server,
    ServerError,
    ServerNotAvailable,
    ServerStartError,
    free_port,
)
from commercekit.testing.servers.kafka import KAFKA_VERSION, KafkaServer
from commercekit.testing.servers.kafka_cluster import KafkaCluster
from commercekit.testing.servers.nginx import NginxServer
from commercekit.testing.servers.postgres import PostgresServer
from commercekit.testing.servers.redis import RedisClusterServer, RedisServer
from commercekit.testing.servers.stack import SERVICE_NAMES, ServiceStack

__all__ = [
    "KAFKA_VERSION",
    "SERVICE_NAMES",
    "KafkaCluster",
    "KafkaServer",
    "NginxServer",
    "PostgresServer",
    "RedisClusterServer",
    "RedisServer",
    "Server",
    "ServerError",
    "ServerNotAvailable",
    "ServerStartError",
    "ServiceStack",
    "free_port",
]
