"""Run the reference app as local processes behind nginx: ``python -m reference_app.launch``.

Each service is ``uvicorn --factory <module>:app_from_env`` on a free
loopback port (as many replicas as asked, behind one nginx upstream);
nginx serves ``reference_app/gateway/nginx.conf``. PostgreSQL, Redis and
Kafka come from the environment (``DATABASE_URL`` or ``POSTGRES_*``,
``REDIS_URL`` or ``REDIS_HOST``, ``KAFKA_BROKER``), or, with
``--with-servers``, from commercekit's test harness. Ctrl-C or SIGTERM
stops everything.

Access tokens are signed with ``JWT_ACCESS_SECRET`` from the environment,
or, without one, with a random secret made for this launch (tokens die
with it): never with commercekit's development secret, which anyone who
has read the source knows (a warning says so if it is the one given).

In Python (the e2e tests do this)::

    with LocalStack(workdir, env={"DATABASE_URL": ...}) as stack:
        httpx.get(stack.gateway_url + "/health")
"""

from __future__ import annotations

import argparse
import http.client
import logging
import os
import secrets
import signal
import sys
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Self

from commercekit.auth.tokens import DEVELOPMENT_SECRET
from commercekit.testing.servers import NginxServer, Server, ServiceStack, free_port

__all__ = [
    "GATEWAY_FOLDERS",
    "KEEP_ALIVE_SECONDS",
    "SERVICES",
    "LocalStack",
    "ServiceSpec",
    "UvicornServer",
    "jwt_secret_env",
    "main",
    "uvicorn_args",
]

log = logging.getLogger("reference_app.launch")

ROOT = Path(__file__).resolve().parent.parent
GATEWAY_CONFIG = Path(__file__).resolve().parent / "gateway" / "nginx.conf"


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One service of the stack.

    Attributes:
        name: short name (``user``), also the folder of its logs.
        factory: the ``module:function`` uvicorn calls (``--factory``).
        placeholder: the gateway placeholder that receives its address(es);
            None for a service the gateway does not route to (email, worker).
        replicas: how many processes to run behind the upstream.
        env: extra environment variables for its processes.
    """

    name: str
    factory: str
    placeholder: str | None
    replicas: int = 1
    env: Mapping[str, str] = field(default_factory=dict)


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("user", "reference_app.user.main:app_from_env", "USER_SERVICE"),
    # One process: on two cores a second one fought nginx, Redis and PostgreSQL for
    # them and halved the batches the store coalesces (docs/operations.md#sizing).
    ServiceSpec("inventory", "reference_app.inventory.main:app_from_env", "INVENTORY_SERVICE"),
    ServiceSpec("payment", "reference_app.payment.main:app_from_env", "PAYMENT_SERVICE"),
    ServiceSpec("email", "reference_app.email.main:app_from_env", None),
    ServiceSpec("worker", "reference_app.worker.main:app_from_env", None),
)
"""Every process of the stack but nginx; docker-compose.yml runs the same commands."""

PLACEHOLDERS = ("USER_SERVICE", "INVENTORY_SERVICE", "PAYMENT_SERVICE")
"""Every upstream placeholder of the gateway config; those without a service get a dead port."""

GATEWAY_FOLDERS = ("AUTH_CACHE_DIR",)
"""The gateway config's folder placeholders; the launcher puts them under the gateway's workdir."""


KEEP_ALIVE_SECONDS = 75
"""Seconds a service keeps an idle connection: past the gateway's ``keepalive_timeout``."""


def uvicorn_args(factory: str, host: str, port: int) -> list[str]:
    """The arguments after ``uvicorn`` that run a service (here and in docker-compose.yml).

    uvloop and httptools (the ``app`` extra installs both) rather than
    uvicorn's pure-Python fallbacks: measured in ``python -m benchmarks.http``.
    No ``Server`` and ``Date`` headers (nginx sends its own to the client) and
    no ``X-Forwarded-*`` rewriting (nothing reads the client's address): each
    is a few microseconds of every request. An idle connection is kept
    `KEEP_ALIVE_SECONDS`, longer than the gateway keeps it: the gateway
    closes it first, and never sends a request on one the service is closing
    (a POST on it would fail as a 502).
    """
    return [
        "--factory",
        factory,
        "--host",
        host,
        "--port",
        str(port),
        "--no-access-log",
        "--timeout-graceful-shutdown",
        "5",
        "--timeout-keep-alive",
        str(KEEP_ALIVE_SECONDS),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-server-header",
        "--no-date-header",
        "--no-proxy-headers",
    ]


class UvicornServer(Server):
    """One service process: ``uvicorn --factory`` on a loopback port, ready when /health answers.

    Args:
        workdir: folder for its log (``uvicorn.log``).
        factory: ``module:function`` returning the app.
        env: the process's environment (settings).
        port: a free one by default.
    """

    name = "uvicorn"

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        factory: str,
        *,
        env: Mapping[str, str],
        port: int | None = None,
    ) -> None:
        super().__init__(workdir, port=port)
        self.factory = factory
        self.env = dict(env)

    @classmethod
    def missing(cls) -> str | None:
        """Uvicorn is a dependency of the ``app`` extra; nothing else is needed."""
        return None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{self.host}:{self.port}"

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``, for an nginx upstream."""
        return f"{self.host}:{self.port}"

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "uvicorn", *uvicorn_args(self.factory, self.host, self.port)]

    def _popen_options(self) -> dict[str, object]:
        pythonpath = os.pathsep.join(p for p in (str(ROOT), self.env.get("PYTHONPATH")) if p)
        return {"env": {**self.env, "PYTHONPATH": pythonpath}}

    def _is_ready(self) -> bool:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=1)
        try:
            conn.request("GET", "/health")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()


class LocalStack:
    """The services as processes plus nginx in front; a context manager.

    Args:
        workdir: folder for logs (one subfolder per process) and nginx's files.
        env: settings for every service (``DATABASE_URL``, ``JWT_ACCESS_SECRET``...),
            on top of this process's environment.
        services: which services to run, with their replica counts.
        with_servers: start PostgreSQL, Redis and Kafka with commercekit's
            harness instead of taking them from `env`.
        gateway_port: nginx's port; a free one by default.
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        env: Mapping[str, str] | None = None,
        services: Sequence[ServiceSpec] = SERVICES,
        with_servers: bool = False,
        gateway_port: int | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.env = {**os.environ, **(env or {})}
        self.services = tuple(services)
        self.backing = ServiceStack(self.workdir / "servers") if with_servers else None
        self.processes: dict[str, list[UvicornServer]] = {}
        self.gateway_port = gateway_port
        self.gateway: NginxServer | None = None

    @property
    def gateway_url(self) -> str:
        """The stack's single entry point."""
        assert self.gateway is not None, "the stack is not started"
        return self.gateway.url

    def urls(self, service: str) -> list[str]:
        """The direct URLs of a service's replicas (for /health, /ready, /metrics)."""
        return [process.url for process in self.processes[service]]

    def start(self) -> Self:
        """Start the backing servers (if asked), every replica, then nginx."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        if self.backing is not None:
            self.backing.start()
            backing = self.backing.env()
            self.env.update(backing)
            if "KAFKA_BOOTSTRAP_SERVERS" in backing:
                self.env["KAFKA_BROKER"] = backing["KAFKA_BOOTSTRAP_SERVERS"]
        self.plan()
        # One after the other, from this thread: the harness ties each child's
        # life to the thread that started it (PR_SET_PDEATHSIG), so a worker
        # thread that ends would take its processes with it.
        for group in self.processes.values():
            for process in group:
                process.start()
        self.gateway = NginxServer(
            self.workdir / "gateway",
            GATEWAY_CONFIG,
            variables=self.gateway_variables(),
            port=self.gateway_port,
        ).start()

    def plan(self) -> dict[str, list[UvicornServer]]:
        """Create (without starting) every replica's process, each with its port."""
        if not self.processes:
            self.processes = {
                spec.name: [
                    UvicornServer(
                        self.workdir / f"{spec.name}-{index}",
                        spec.factory,
                        env={**self.env, **spec.env},
                        # Fixed now, so a restarted process keeps the address nginx knows.
                        port=free_port(),
                    )
                    for index in range(1, spec.replicas + 1)
                ]
                for spec in self.services
            }
        return self.processes

    def upstreams(self) -> dict[str, str]:
        """The gateway placeholders: each service's replicas, or a port nobody listens on."""
        by_placeholder = {
            spec.placeholder: [p.address for p in self.processes.get(spec.name, [])]
            for spec in self.services
            if spec.placeholder is not None
        }
        return {
            name: "; server ".join(by_placeholder.get(name) or [f"127.0.0.1:{free_port()}"])
            for name in (*PLACEHOLDERS, *by_placeholder)
        }

    def gateway_variables(self) -> dict[str, str]:
        """Every placeholder of the gateway config: the `upstreams` and its folders (created)."""
        folders = {name: self.workdir / "gateway" / name.lower() for name in GATEWAY_FOLDERS}
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        return {**self.upstreams(), **{name: str(path) for name, path in folders.items()}}

    def stop(self) -> None:
        """Stop nginx, every service process, then the backing servers."""
        if self.gateway is not None:
            self.gateway.stop()
        processes = [p for group in self.processes.values() for p in group]
        with ThreadPoolExecutor(max_workers=max(len(processes), 1)) as pool:
            list(pool.map(lambda process: process.stop(timeout=10), processes))
        if self.backing is not None:
            self.backing.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _replicas(values: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        name, _, count = value.partition("=")
        counts[name] = int(count)
    return counts


SECRET_VARIABLES = ("JWT_ACCESS_SECRET", "COMMERCEKIT_JWT_SECRET")
"""Where the user service takes its JWT secret from (either one gives it)."""


def jwt_secret_env(environ: Mapping[str, str]) -> dict[str, str]:
    """What a launch adds to `environ` for the JWT secret: a random one unless one is given.

    A given secret is kept (tokens then outlive the launch); if it is
    commercekit's well-known development secret, a warning says that anyone
    can mint tokens, admin ones included, for this stack.
    """
    given = [environ[name] for name in SECRET_VARIABLES if environ.get(name)]
    if any(secret == DEVELOPMENT_SECRET for secret in given):
        log.warning(
            "the JWT secret is commercekit's development secret, which stands in the "
            "source: anyone can mint tokens (admin ones too) for this stack; unset it "
            "for a random secret per launch, or set a random one"
        )
    if given:
        return {}
    log.info(
        "JWT_ACCESS_SECRET is not set: tokens are signed with a random secret made for "
        "this launch (they stop working when it ends)"
    )
    return {"JWT_ACCESS_SECRET": secrets.token_urlsafe(48)}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the stack until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m reference_app.launch", description=__doc__)
    parser.add_argument(
        "--with-servers",
        action="store_true",
        help="start PostgreSQL, Redis and Kafka from their binaries (commercekit's harness)",
    )
    parser.add_argument("--port", type=int, default=None, help="the gateway's port (default: free)")
    parser.add_argument(
        "--replicas",
        action="append",
        default=[],
        metavar="SERVICE=N",
        help="run N processes of a service behind the gateway (repeatable)",
    )
    parser.add_argument("--workdir", default=None, help="folder for logs (default: a temp folder)")
    args = parser.parse_args(argv)
    counts = _replicas(args.replicas)
    services = [
        ServiceSpec(s.name, s.factory, s.placeholder, counts.get(s.name, s.replicas), s.env)
        for s in SERVICES
    ]
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    env = {
        "ENVIRONMENT": os.environ.get("ENVIRONMENT", "development"),
        **jwt_secret_env(os.environ),
    }
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with tempfile.TemporaryDirectory(prefix="refapp-") as tmp:
        workdir = Path(args.workdir or tmp)
        stack = LocalStack(
            workdir,
            env=env,
            services=services,
            with_servers=args.with_servers,
            gateway_port=args.port,
        )
        with stack:
            print(f"gateway: {stack.gateway_url}", flush=True)
            for spec in services:
                print(f"{spec.name}: {', '.join(stack.urls(spec.name))}", flush=True)
            print(f"logs: {workdir}  (Ctrl-C stops everything)", flush=True)
            stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
