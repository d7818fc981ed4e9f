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
    uvicorn_args,
)

from commercekit.errors import ConfigurationError
from commercekit.testing.servers import NginxServer
from commercekit.testing.servers.nginx import render_template
from commercekit.tracing import TraceContext

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


def _locations(config: str) -> dict[str, str]:
    """Each location's name -> its body (the config's locations hold no nested blocks but if)."""
    found: dict[str, str] = {}
    for match in re.finditer(r"^    location ([^{]+)\{\n(.*?)^    \}", config, re.M | re.S):
        found[match.group(1).strip()] = match.group(2)
    return found


def test_no_location_drops_the_servers_headers() -> None:
    # nginx's rule: an add_header in a location drops every add_header of the
    # server, so the secure headers are set once, at the server, for all.
    config = GATEWAY_CONFIG.read_text()
    locations = _locations(config)
    assert "@too_many_requests" in locations
    assert "= /_bad_request" in locations
    for name, body in locations.items():
        assert "add_header" not in body, name
    server_level = config.split("location = /_auth")[0]
    for header in (
        "X-Content-Type-Options nosniff",
        "X-Frame-Options DENY",
        "Content-Security-Policy \"default-src 'none'; frame-ancestors 'none'\"",
        "Referrer-Policy no-referrer",
        "Cross-Origin-Resource-Policy same-origin",
        "Cache-Control $refapp_cache_control",
        "Retry-After $refapp_retry_after",
    ):
        assert f"add_header {header} always;" in server_level, header


def test_no_error_of_the_gateway_is_a_502_or_504() -> None:
    # A service that cannot be reached (or answers too late) is a 503 with
    # Retry-After, as the docs say; no location of the gateway answers 502/504.
    config = GATEWAY_CONFIG.read_text()
    assert "error_page 502 503 504 = @unavailable;" in config
    assert not re.search(r"return 50[24]\b", config)
    assert "return 503" in _locations(config)["@unavailable"]


def test_the_services_get_a_fixed_host_never_the_clients() -> None:
    config = GATEWAY_CONFIG.read_text()
    assert "$host" not in config.replace("$http_", "")
    assert config.count("proxy_set_header Host $proxy_host") == 2  # the services, the auth check


TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENTS = [
    f"00-{TRACE}-00f067aa0ba902b7-01",
    f"00-{TRACE}-00f067aa0ba902b7-00",
    f"00-{TRACE.upper()}-00f067aa0ba902b7-01",
    f"01-{TRACE}-00f067aa0ba902b7-01",
    f"00-{'0' * 32}-00f067aa0ba902b7-01",
    f"00-{TRACE}-{'0' * 16}-01",
    f"00-{TRACE}-00f067aa0ba902b7-1",
    f"00-{TRACE}-00f067aa0ba902b7-01-",
    f"00-{TRACE[:-1]}-00f067aa0ba902b7-01",
    "",
]


@pytest.mark.parametrize("value", TRACEPARENTS)
def test_the_gateway_keeps_exactly_the_traceparents_the_library_accepts(value: str) -> None:
    config = GATEWAY_CONFIG.read_text()
    block = re.search(r"map \$http_traceparent \$refapp_trace_kept \{\n(.*?)\n\}", config, re.S)
    assert block is not None
    (pattern,) = re.findall(r'"~(.*)"\s+1;', block.group(1))
    assert (re.search(pattern, value) is not None) == (TraceContext.from_headers(value) is not None)


def test_the_trace_context_reaches_the_services_and_the_token_check() -> None:
    config = GATEWAY_CONFIG.read_text()
    assert config.count("proxy_set_header traceparent $refapp_traceparent;") == 2
    assert config.count("proxy_set_header tracestate $refapp_tracestate") == 2
    assert '"trace_id":"$refapp_trace_id"' in config  # in the access log
    assert "$http_traceparent;" in config.split("$refapp_traceparent {")[1].split("}")[0]


def test_the_gateway_closes_an_idle_upstream_connection_before_the_service_does() -> None:
    # uvicorn's default keep-alive was 5 s and nginx's upstream 60 s: nginx
    # could send a request on a connection the service was closing, and a
    # POST on it failed as a 502 (one error in a run of the HTTP benchmark).
    config = GATEWAY_CONFIG.read_text()
    upstreams = re.findall(r"^upstream (\w+) \{(.*?)^\}", config, re.DOTALL | re.MULTILINE)
    assert len(upstreams) == len(PLACEHOLDERS)
    args = uvicorn_args("reference_app.user.main:app_from_env", "127.0.0.1", 8001)
    service_seconds = int(args[args.index("--timeout-keep-alive") + 1])
    for name, body in upstreams:
        found = re.search(r"keepalive_timeout (\d+)s;", body)
        assert found is not None, name
        assert int(found.group(1)) < service_seconds, name
