"""The gateway's nginx config renders and passes ``nginx -t``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from reference_app.launch import (
    GATEWAY_CONFIG,
    GATEWAY_FOLDERS,
    PLACEHOLDERS,
    LocalStack,
    ServiceSpec,
)

from commercekit.errors import ConfigurationError
from commercekit.testing.servers import NginxServer
from commercekit.testing.servers.nginx import render_template

UPSTREAMS = {name: f"127.0.0.1:{9000 + i}" for i, name in enumerate(PLACEHOLDERS)}


def nginx_check(workdir: Path, variables: dict[str, str]) -> None:
    """Render and run ``nginx -t`` (NginxServer checks the config before it starts)."""
    reason = NginxServer.missing()
    if reason is not None:
        pytest.skip(reason)
    workdir.mkdir(parents=True, exist_ok=True)
    variables = {name: str(workdir / name.lower()) for name in GATEWAY_FOLDERS} | variables
    # No public "check only" method: _command() renders and runs `nginx -t`.
    NginxServer(workdir, GATEWAY_CONFIG, variables=variables)._command()


def test_placeholders_are_the_documented_ones() -> None:
    found = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)\}", GATEWAY_CONFIG.read_text()))
    assert found == {*PLACEHOLDERS, *GATEWAY_FOLDERS, "PORT"}


def test_a_missing_upstream_is_an_error() -> None:
    with pytest.raises(ConfigurationError, match="USER_SERVICE"):
        render_template(GATEWAY_CONFIG.read_text(), {"PORT": "80"})


def test_config_passes_nginx_t(tmp_path: Path) -> None:
    nginx_check(tmp_path, UPSTREAMS)


def test_several_replicas_render_one_upstream(tmp_path: Path) -> None:
    stack = LocalStack(
        tmp_path,
        env={},
        services=[ServiceSpec("user", "reference_app.user.main:app_from_env", "USER_SERVICE", 3)],
    )
    stack.plan()  # ports chosen, nothing started
    variables = stack.gateway_variables()
    assert variables["USER_SERVICE"].count("; server ") == 2
    assert set(variables) == {*PLACEHOLDERS, *GATEWAY_FOLDERS}
    nginx_check(tmp_path / "nginx", variables)
    site = (tmp_path / "nginx" / "site.conf").read_text()
    assert site.count("server 127.0.0.1:") >= 3 + 2
