"""The process management every server of the harness shares."""

from __future__ import annotations

import abc
import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

from commercekit.errors import CommerceKitError

__all__ = ["Server", "ServerError", "ServerNotAvailable", "ServerStartError", "free_port"]

LOOPBACK = "127.0.0.1"

_PR_SET_PDEATHSIG = 1
_running: weakref.WeakSet[Server] = weakref.WeakSet()


class ServerError(CommerceKitError):
    """Base class of the harness's errors."""


class ServerNotAvailable(ServerError):
    """The server's binary (or jars) is not installed; the message says how to get it."""


class ServerStartError(ServerError):
    """The server was started but exited or did not become ready in time."""


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def tcp_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGKILL the child when the process that started it dies."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class Server(abc.ABC):
    """A real server process on a loopback port, with its data under `workdir`.

    `start` is idempotent and blocks until the server answers; `stop` ends it
    gracefully (then by force); `kill` ends it with SIGKILL, as a crash would;
    `restart` keeps the port and the data. Every process the server spawned
    is in one process group, ended as a whole, and, when started from the
    main thread, dies with the Python process that started it (even killed
    with SIGKILL), so nothing is left running. Servers started from other
    threads are stopped at interpreter exit instead.
    """

    name: ClassVar[str]
    """Short name used for logs and messages (``"redis"``)."""
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM
    start_timeout: ClassVar[float] = 30.0
    host: str = LOOPBACK

    def __init__(self, workdir: str | os.PathLike[str], *, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self._port_given = port is not None
        self.port = port if port is not None else free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._prepared = False

    # ------------------------------------------------------------ to override
    @classmethod
    @abc.abstractmethod
    def missing(cls) -> str | None:
        """Why this server cannot run on this machine (with how to fix it), or None."""

    @property
    @abc.abstractmethod
    def url(self) -> str:
        """The URL a client connects to."""

    @abc.abstractmethod
    def _command(self) -> list[str]:
        """The command line that runs the server in the foreground."""

    @abc.abstractmethod
    def _is_ready(self) -> bool:
        """Whether the server answers a real request yet."""

    def _prepare(self) -> None:  # noqa: B027 - optional hook, empty by default
        """One-time setup of the data folder before the first start."""

    def _after_ready(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Work to do once the server answers (create a database...)."""

    def _popen_options(self) -> dict[str, Any]:
        """Extra `subprocess.Popen` options (another user, environment)."""
        return {}

    # ------------------------------------------------------------ lifecycle
    @property
    def log_path(self) -> Path:
        """The file that receives the server's stdout and stderr."""
        return self.workdir / f"{self.name}.log"

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._proc.pid if self.running and self._proc is not None else None

    def start(self) -> Self:
        """Start the server and wait until it is ready; a no-op if it runs."""
        if self.running:
            return self
        reason = self.missing()
        if reason is not None:
            raise ServerNotAvailable(reason)
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self._prepared:
            self._prepare()
            self._prepared = True
        attempts = 1 if self._port_given else 3
        for attempt in range(attempts):
            try:
                self._spawn_and_wait()
            except ServerStartError as exc:
                # Another process may have taken the port between `free_port()`
                # and the bind: pick a new one, unless the caller chose it.
                if attempt + 1 < attempts and "in use" in str(exc).lower():
                    self.port = free_port()
                    continue
                raise
            break
        self._after_ready()
        return self

    def _spawn_and_wait(self) -> None:
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
                # Linux ties PDEATHSIG to the starting *thread*: from a worker
                # thread the server would die with that thread, so only the
                # main thread asks for it (atexit and stop() cover the rest).
                preexec_fn=(  # noqa: PLW1509 - only calls prctl(2)
                    _die_with_parent
                    if threading.current_thread() is threading.main_thread()
                    else None
                ),
                **self._popen_options(),
            )
        _running.add(self)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._proc.poll() is not None:
                raise ServerStartError(
                    f"{self.name} exited with code {self._proc.returncode} while starting; "
                    f"last lines of {self.log_path}:\n{self.log_tail()}"
                )
            if self._is_ready():
                return
            if time.monotonic() > deadline:
                self.kill()
                raise ServerStartError(
                    f"{self.name} was not ready after {self.start_timeout:.0f}s; "
                    f"last lines of {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server gracefully; force it after `timeout` seconds."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal_group(self.stop_signal)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                proc.wait()
        # Children that outlived their parent (nginx workers, say) go too.
        self._signal_group(signal.SIGKILL)
        self._proc = None

    def kill(self) -> None:
        """End the server with SIGKILL, the way a crash would; its data stays."""
        if self._proc is None:
            return
        self._signal_group(signal.SIGKILL)
        self._proc.wait()
        self._proc = None

    def restart(self) -> Self:
        """Stop and start again on the same port with the same data."""
        self.stop()
        return self.start()

    def _signal_group(self, sig: signal.Signals) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)

    def log_tail(self, lines: int = 30) -> str:
        """The last lines the server wrote to its log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

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
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.url} {state}>"


@atexit.register
def _stop_all() -> None:  # pragma: no cover - exercised by interpreter exit
    for server in list(_running):
        with contextlib.suppress(Exception):
            server.stop(timeout=10)
