"""A real nginx, serving a configuration file kept in the repository.

The file holds what goes inside nginx's ``http { }`` block (``upstream``,
``server``, ``limit_req_zone``...), the same shape as a file in the official
image's ``/etc/nginx/conf.d/``. Placeholders written ``${NAME}`` (upper case)
are filled from the `variables` you pass; ``${PORT}`` is the port the
harness chose. nginx's own ``$variables`` are left alone.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from commercekit.errors import ConfigurationError
from commercekit.testing.servers._base import Server, tcp_open

__all__ = ["NginxServer", "render_template"]

_INSTALL_HINT = "install it with `apt-get install nginx-light` (or run `bash .ci/setup`)"
_PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")


def render_template(template: str, variables: Mapping[str, str]) -> str:
    """Fill every ``${NAME}`` placeholder; a name without a value is an error."""
    missing = sorted({m for m in _PLACEHOLDER.findall(template) if m not in variables})
    if missing:
        raise ConfigurationError(f"no value for nginx placeholder(s): {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda m: variables[m.group(1)], template)


def _nginx_binary() -> str | None:
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


class NginxServer(Server):
    """nginx in the foreground with a generated main config around yours.

    Args:
        workdir: folder for the rendered config, temp files and logs
            (``access.log``, ``error.log``).
        config: the ``http``-level config file (a path) to render.
        variables: values for its ``${NAME}`` placeholders.
        port: the port for ``${PORT}``; a free one by default.
        workers: nginx ``worker_processes``.
    """

    name = "nginx"

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        config: str | os.PathLike[str],
        *,
        variables: Mapping[str, str] | None = None,
        port: int | None = None,
        workers: int = 1,
    ) -> None:
        super().__init__(workdir, port=port)
        self.config = Path(config)
        self.variables = dict(variables or {})
        self.workers = workers

    @classmethod
    def missing(cls) -> str | None:
        """Say how to install nginx if it is not found."""
        if _nginx_binary() is None:
            return f"nginx is not on PATH: {_INSTALL_HINT}"
        return None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{self.host}:{self.port}"

    @property
    def access_log(self) -> Path:
        """Nginx's access log (one line a request)."""
        return self.workdir / "access.log"

    def _main_config(self) -> str:
        work = self.workdir
        # As root, nginx would drop its workers to `nobody`, who cannot write
        # the private temp folders; a test harness keeps them as root.
        user = "user root root;\n" if os.geteuid() == 0 else ""
        temp = "\n".join(
            f"    {kind}_temp_path {work / 'tmp' / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        return (
            f"{user}daemon off;\n"
            f"worker_processes {self.workers};\n"
            f"pid {work / 'nginx.pid'};\n"
            f"error_log {work / 'error.log'} warn;\n"
            "events { worker_connections 4096; }\n"
            "http {\n"
            f"    access_log {work / 'access.log'};\n"
            f"{temp}\n"
            f"    include {work / 'site.conf'};\n"
            "}\n"
        )

    def _render(self) -> Path:
        site = render_template(self.config.read_text(), {**self.variables, "PORT": str(self.port)})
        (self.workdir / "tmp").mkdir(exist_ok=True)
        (self.workdir / "site.conf").write_text(site)
        main = self.workdir / "nginx.conf"
        main.write_text(self._main_config())
        return main

    def _args(self, main: Path) -> list[str]:
        binary = _nginx_binary()
        assert binary is not None, "checked by missing()"
        error_log = str(self.workdir / "error.log")
        return [binary, "-p", str(self.workdir), "-c", str(main), "-e", error_log]

    def _command(self) -> list[str]:
        main = self._render()
        check = subprocess.run(
            [*self._args(main), "-t"], capture_output=True, text=True, check=False
        )
        if check.returncode != 0:
            raise ConfigurationError(f"nginx rejected {self.config}:\n{check.stderr.strip()}")
        return self._args(main)

    def _is_ready(self) -> bool:
        return tcp_open(self.host, self.port)
