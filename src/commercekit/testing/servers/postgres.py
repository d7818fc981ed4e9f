"""A real PostgreSQL 15 cluster (``initdb`` + ``postgres``) on a loopback port."""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from commercekit.testing.servers._base import Server, ServerStartError

__all__ = ["PostgresServer", "postgres_bindir"]

_INSTALL_HINT = "install it with `apt-get install postgresql` (or run `bash .ci/setup`)"
_DEBIAN_ROOT = Path("/usr/lib/postgresql")
_SUPERUSER = "postgres"
_DATABASE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def postgres_bindir() -> Path | None:
    """Where ``initdb`` and ``postgres`` live.

    ``$COMMERCEKIT_PG_BINDIR`` first, then the newest Debian cluster version
    under ``/usr/lib/postgresql``, then ``postgres`` on PATH.
    """
    override = os.environ.get("COMMERCEKIT_PG_BINDIR")
    candidates = [Path(override)] if override else []
    if _DEBIAN_ROOT.is_dir():
        versions = sorted(
            (p for p in _DEBIAN_ROOT.iterdir() if p.name.isdigit()),
            key=lambda p: int(p.name),
            reverse=True,
        )
        candidates += [v / "bin" for v in versions]
    on_path = shutil.which("postgres")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    return None


class PostgresServer(Server):
    """A throw-away PostgreSQL cluster with a ``commercekit`` database.

    The superuser is ``postgres`` with trust authentication on loopback only.
    PostgreSQL refuses to run as root: under root the cluster runs as the
    ``postgres`` system user, with its data in a private temporary folder
    (linked from `workdir`) that is removed when Python exits.

    Args:
        workdir: folder for the log (and the data, when not root).
        port: TCP port; a free one by default.
        durable: keep fsync and synchronous commit on, as in production;
            off by default, which makes tests several times faster.
        max_connections: PostgreSQL's ``max_connections``.
    """

    name = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: does not wait for clients
    database = "commercekit"

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        port: int | None = None,
        durable: bool = False,
        max_connections: int = 300,
    ) -> None:
        super().__init__(workdir, port=port)
        self.durable = durable
        self.max_connections = max_connections
        self._user = _SUPERUSER if os.geteuid() == 0 else None
        self.data_dir = self.workdir / "data"
        self.refusing = False

    @classmethod
    def missing(cls) -> str | None:
        """Say how to install PostgreSQL if ``initdb``/``postgres`` are not found."""
        if postgres_bindir() is None:
            return f"PostgreSQL server binaries (initdb, postgres) not found: {_INSTALL_HINT}"
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(_SUPERUSER)
            except KeyError:
                return "running as root needs the `postgres` system user: " + _INSTALL_HINT
        return None

    @functools.cached_property
    def _bindir(self) -> Path:
        bindir = postgres_bindir()
        assert bindir is not None, "checked by missing()"
        return bindir

    @property
    def url(self) -> str:
        """``postgresql://postgres@127.0.0.1:<port>/commercekit`` (libpq style)."""
        return self.url_for(self.database)

    @property
    def async_url(self) -> str:
        """The same database as a SQLAlchemy asyncpg URL."""
        return self.url.replace("postgresql://", "postgresql+asyncpg://", 1)

    def url_for(self, database: str) -> str:
        """The libpq URL of another database on this server."""
        return f"postgresql://{_SUPERUSER}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create database `name` (if new) and return its libpq URL."""
        if not _DATABASE_NAME.match(name):
            raise ValueError(f"not a safe database name: {name!r}")
        result = subprocess.run(
            [str(self._bindir / "createdb"), *self._client_args(), name],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 and "already exists" not in result.stderr:
            raise ServerStartError(f"createdb {name} failed: {result.stderr.strip()}")
        return self.url_for(name)

    def _client_args(self) -> list[str]:
        return ["-h", self.host, "-p", str(self.port), "-U", _SUPERUSER]

    def _popen_options(self) -> dict[str, Any]:
        return {"user": self._user} if self._user else {}

    def _prepare(self) -> None:
        if self._user is not None:
            # The postgres user cannot enter root's private temp folders.
            private = Path(tempfile.mkdtemp(prefix="commercekit-postgres-"))
            shutil.chown(private, user=self._user)
            atexit.register(shutil.rmtree, private, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                self.data_dir.unlink()
            self.data_dir.symlink_to(private / "data")
            self.data_dir = private / "data"
        result = subprocess.run(
            [
                str(self._bindir / "initdb"),
                "-D", str(self.data_dir),
                "-U", _SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            check=False,
            **self._popen_options(),
        )  # fmt: skip
        if result.returncode != 0:
            raise ServerStartError(f"initdb failed:\n{result.stdout}\n{result.stderr}")

    def refuse_connections(self) -> None:
        """Restart as a standby that refuses every connection with SQLSTATE 57P03.

        57P03 ("cannot connect now") is what a server that is starting up
        answers; a standby without hot standby answers it too ("the database
        system is not accepting connections"), for as long as it stays one,
        so a test can hold the refusal. The data is kept; restarts keep
        refusing until `accept_connections`.
        """
        self.stop()
        (self.data_dir / "standby.signal").touch()
        self.refusing = True
        self.start()

    def accept_connections(self) -> None:
        """Promote the standby of `refuse_connections`: it serves its data again."""
        if not self.refusing:
            return
        subprocess.run(
            [str(self._bindir / "pg_ctl"), "promote", "-w", "-D", str(self.data_dir)],
            capture_output=True,
            check=True,
            **self._popen_options(),
        )
        self.refusing = False

    def _command(self) -> list[str]:
        settings = {
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": str(self.data_dir),
            "max_connections": str(self.max_connections),
            "shared_buffers": "128MB",
        }
        if not self.durable:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        if self.refusing:
            settings["hot_standby"] = "off"
        args = [str(self._bindir / "postgres"), "-D", str(self.data_dir)]
        for key, value in settings.items():
            args += ["-c", f"{key}={value}"]
        return args

    def _is_ready(self) -> bool:
        result = subprocess.run(
            [str(self._bindir / "pg_isready"), *self._client_args(), "-d", "postgres", "-q"],
            check=False,
        )
        # pg_isready: 0 accepting connections, 1 rejecting them (as `refusing` asks).
        return result.returncode in ((0, 1) if self.refusing else (0,))

    def _after_ready(self) -> None:
        if not self.refusing:
            self.create_database(self.database)
