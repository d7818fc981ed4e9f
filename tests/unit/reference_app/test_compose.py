"""reference_app/docker-compose.yml and its Dockerfile: valid, complete, and in step with launch.py.

Docker is not available here, so nothing is built or started: the file is
checked against the compose-spec JSON Schema (the copy check-jsonschema
ships), its environment is fed to each service's settings class, its
commands are compared with the launcher's, and the gateway template is
rendered the way the official nginx image does and checked with ``nginx -t``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic_settings import BaseSettings
from reference_app.launch import (
    GATEWAY_CONFIG,
    GATEWAY_FOLDERS,
    PLACEHOLDERS,
    SERVICES,
    uvicorn_args,
)
from reference_app.settings import (
    EmailSettings,
    InventorySettings,
    PaymentSettings,
    UserSettings,
    WorkerSettings,
)

from commercekit.testing.servers import NginxServer

APP_DIR = GATEWAY_CONFIG.parent.parent
COMPOSE_FILE = APP_DIR / "docker-compose.yml"
DOCKERFILE = APP_DIR / "Dockerfile"
MONITORING = APP_DIR / "monitoring"
APP_PORT = 8000
PROMETHEUS_PORT = 9090
GRAFANA_PORT = 3000

SETTINGS: dict[str, type[BaseSettings]] = {
    "user": UserSettings,
    "inventory": InventorySettings,
    "payment": PaymentSettings,
    "email": EmailSettings,
    "worker": WorkerSettings,
}
"""The settings class each app service reads."""

BACKENDS = {
    "user": {"postgres"},
    "inventory": {"postgres", "redis", "kafka"},
    "payment": {"postgres", "redis", "kafka"},  # redis: it pins the hold it charges for
    "email": {"postgres", "kafka"},
    "worker": {"postgres", "redis", "kafka"},
}
"""The servers each app service connects to (its lifespan's ``connect``)."""

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>\w+)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>\w+))"
)


class MissingVariable(Exception):
    """A ``${VAR:?message}`` whose variable is not set."""


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation of one string: ``$$``, ``${V}``, ``${V:-d}``, ``${V:?e}``..."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["named"]
        op, arg = match["op"], match["arg"] or ""
        found = env.get(name)
        unset = found is None or (op is not None and op.startswith(":") and found == "")
        if op in (":-", "-"):
            return arg if unset else str(found)
        if op in (":?", "?"):
            if unset:
                raise MissingVariable(f"{name}: {arg}")
            return str(found)
        if op in (":+", "+"):
            return "" if unset else arg
        return found or ""

    return _VARIABLE.sub(replace, value)


def load(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The compose file as data (YAML anchors and ``<<`` merges resolved)."""
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = load()["services"]
    return found


def environment(service: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """A service's environment after interpolation with `env` (the shell's and .env's)."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {
        key: interpolate("" if value is None else str(value), env) for key, value in raw.items()
    }


def depends_on(service: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    raw = service.get("depends_on") or {}
    if isinstance(raw, list):
        return {name: {"condition": "service_started"} for name in raw}
    return {name: dict(options or {}) for name, options in raw.items()}


def shell_env() -> dict[str, str]:
    """What the person running compose sets: the required secret only."""
    return {"JWT_ACCESS_SECRET": secrets.token_urlsafe(48)}


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No variable of this process leaks into the settings under test."""
    for name in list(os.environ):
        monkeypatch.delenv(name)
    return monkeypatch


def settings_from(
    monkeypatch: pytest.MonkeyPatch, cls: type[BaseSettings], env: Mapping[str, str]
) -> Any:
    for name in list(os.environ):
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return cls()


# ---------------------------------------------------------------- the schema


def check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", path],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_the_file_matches_the_compose_spec() -> None:
    result = check_jsonschema(COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_an_invalid_file(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    text = COMPOSE_FILE.read_text()
    assert "    healthcheck: *ready\n" in text
    broken.write_text(text.replace("    healthcheck: *ready\n", "    healtcheck: *ready\n", 1))
    result = check_jsonschema(broken)
    assert result.returncode != 0
    assert "healtcheck" in result.stdout + result.stderr


# ---------------------------------------------------------------- the services


def test_every_service_has_a_healthcheck() -> None:
    for name, service in services().items():
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert not check.get("disable"), name
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert len(check["test"]) > 1, name


def test_depends_on_names_defined_services_and_waits_for_their_health() -> None:
    defined = services()
    for name, service in defined.items():
        for dependency, options in depends_on(service).items():
            assert dependency in defined, f"{name} depends on undefined {dependency!r}"
            assert dependency != name
            assert options.get("condition") == "service_healthy", (name, dependency)
            assert defined[dependency].get("healthcheck"), dependency


def test_only_the_gateway_and_grafana_publish_ports() -> None:
    defined = services()
    publishing = {name for name, service in defined.items() if service.get("ports")}
    assert publishing == {"gateway", "grafana"}
    assert "prometheus" in defined
    assert not defined["prometheus"].get("expose")
    # Grafana only on the machine's loopback address: its admin password defaults to "admin".
    (published,) = [interpolate(str(port), {}) for port in defined["grafana"]["ports"]]
    assert published == f"127.0.0.1:3000:{GRAFANA_PORT}"


def test_each_app_service_runs_the_launchers_command() -> None:
    defined = services()
    app_image = defined["user"]["image"]
    on_the_image = {name for name, service in defined.items() if service.get("image") == app_image}
    assert on_the_image == {spec.name for spec in SERVICES}
    for spec in SERVICES:
        service = defined[spec.name]
        assert service["command"] == ["uvicorn", *uvicorn_args(spec.factory, "0.0.0.0", APP_PORT)]
        assert service["build"] == defined["user"]["build"], spec.name
        assert f":{APP_PORT}/" in " ".join(service["healthcheck"]["test"]), spec.name


def test_the_images_default_command_is_the_launchers() -> None:
    cmd = re.search(r"^CMD (\[.*\])$", DOCKERFILE.read_text(), re.MULTILINE)
    assert cmd is not None
    user = next(spec for spec in SERVICES if spec.name == "user")
    assert json.loads(cmd.group(1)) == ["uvicorn", *uvicorn_args(user.factory, "0.0.0.0", APP_PORT)]


def test_each_service_runs_as_many_processes_as_the_launcher() -> None:
    defined = services()
    for spec in SERVICES:
        replicas = defined[spec.name].get("deploy", {}).get("replicas", 1)
        assert replicas == spec.replicas, spec.name


def test_the_gateway_routes_to_each_service_on_its_port() -> None:
    gateway = services()["gateway"]
    env = environment(gateway, {})
    expected = {
        spec.placeholder: f"{spec.name}:{APP_PORT}" for spec in SERVICES if spec.placeholder
    }
    assert set(expected) == set(PLACEHOLDERS)
    assert {name: env.get(name) for name in PLACEHOLDERS} == expected
    published = [interpolate(str(port), {}) for port in gateway["ports"]]
    assert [port.rsplit(":", 1)[1] for port in published] == [env["PORT"]]
    mounts = [str(volume).split(":") for volume in gateway["volumes"]]
    templates = [m for m in mounts if m[1].startswith("/etc/nginx/templates/")]
    assert len(templates) == 1
    source, target = templates[0][:2]
    assert (COMPOSE_FILE.parent / source).resolve() == GATEWAY_CONFIG.resolve()
    assert target.endswith(".conf.template")
    assert set(depends_on(gateway)) == {spec.name for spec in SERVICES if spec.placeholder}


def test_settings_and_launcher_agree_on_the_services() -> None:
    assert set(SETTINGS) == set(BACKENDS) == {spec.name for spec in SERVICES}


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_the_service_environment_is_enough_for_its_settings(
    name: str, clean_environ: pytest.MonkeyPatch
) -> None:
    defined = services()
    service = defined[name]
    env = environment(service, shell_env())
    cls = SETTINGS[name]
    required = {field for field, info in cls.model_fields.items() if info.is_required()}
    assert required <= {key.lower() for key in env}, f"{name}: {required}"
    settings = settings_from(clean_environ, cls, env)  # raises if a value is invalid

    assert settings.environment == "production"  # no development shortcuts by default
    needs = BACKENDS[name]
    hosts = {"postgres": urlsplit(settings.database_dsn).hostname}
    if "redis" in needs:
        hosts["redis"] = urlsplit(settings.redis_dsn).hostname
    if "kafka" in needs:
        brokers = {server.rsplit(":", 1)[0] for server in settings.kafka_bootstrap_servers}
        assert len(brokers) == 1, brokers
        hosts["kafka"] = brokers.pop()
    for backend, host in hosts.items():
        assert host in defined, f"{name} reaches {backend} at {host!r}, not a compose service"
    assert set(hosts.values()) <= set(depends_on(service)), name


def test_the_user_service_needs_a_jwt_secret() -> None:
    user = services()["user"]
    with pytest.raises(MissingVariable, match="JWT_ACCESS_SECRET"):
        environment(user, {})
    with pytest.raises(MissingVariable, match="JWT_ACCESS_SECRET"):
        environment(user, {"JWT_ACCESS_SECRET": ""})
    assert environment(user, {"JWT_ACCESS_SECRET": "s3cr3t"})["JWT_ACCESS_SECRET"] == "s3cr3t"


_DEFAULTED = re.compile(r"^\$\{(\w+):-(.*)\}$")
_COMPOSE_OWNED = {"POSTGRES_PASSWORD"}
"""Defaults the stack chooses itself (the database container gets the same one)."""


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_compose_defaults_are_the_settings_defaults(
    name: str, clean_environ: pytest.MonkeyPatch
) -> None:
    service = services()[name]
    cls = SETTINGS[name]
    base = {"JWT_ACCESS_SECRET": secrets.token_urlsafe(48)}
    plain = settings_from(clean_environ, cls, base)
    checked = 0
    for key, raw in (service.get("environment") or {}).items():
        match = _DEFAULTED.match(str(raw))
        if match is None or key in _COMPOSE_OWNED or key.lower() not in cls.model_fields:
            continue
        assert match[1] == key, f"{name}: {key} reads ${{{match[1]}}}"
        defaulted = settings_from(clean_environ, cls, {**base, key: match[2]})
        field = key.lower()
        assert getattr(defaulted, field) == getattr(plain, field), f"{name}: {key}"
        checked += 1
    assert checked >= 3


def test_the_database_credentials_are_the_same_everywhere() -> None:
    defined = services()
    database = environment(defined["postgres"], {})
    for spec in SERVICES:
        env = environment(defined[spec.name], shell_env())
        for key in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"):
            assert env[key] == database[key], (spec.name, key)
    overridden = {"POSTGRES_PASSWORD": "other"}
    assert environment(defined["postgres"], overridden)["POSTGRES_PASSWORD"] == "other"
    assert environment(defined["user"], {**shell_env(), **overridden})["POSTGRES_PASSWORD"] == (
        "other"
    )


# ---------------------------------------------------------------- monitoring


def mounts(service: Mapping[str, Any]) -> dict[str, tuple[str, list[str]]]:
    """A service's volumes: container path -> (host path or volume name, options)."""
    found = {}
    for volume in service.get("volumes") or []:
        source, target, *options = str(volume).split(":")
        found[target] = (source, options)
    return found


def bound(service: Mapping[str, Any], target: str) -> Path:
    """The file or folder of this checkout that `service` mounts read-only at `target`."""
    source, options = mounts(service)[target]
    assert source.startswith("./"), (target, source)
    assert options == ["ro"], (target, options)
    path = (COMPOSE_FILE.parent / source).resolve()
    assert path.exists(), path
    return path


def prometheus_config() -> dict[str, Any]:
    prometheus = services()["prometheus"]
    config_flag = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    config = bound(prometheus, config_flag.split("=", 1)[1])
    assert config == (MONITORING / "prometheus.yml").resolve()
    data = yaml.safe_load(config.read_text())
    assert isinstance(data, dict)
    return data


def test_prometheus_scrapes_every_service_with_metrics() -> None:
    jobs = {job["job_name"]: job for job in prometheus_config()["scrape_configs"]}
    # Every process on the app image serves /metrics (reference_app.common.probes).
    assert set(jobs) == {spec.name for spec in SERVICES}
    for spec in SERVICES:
        job = jobs[spec.name]
        assert job.get("metrics_path", "/metrics") == "/metrics"
        # DNS discovery: every replica of the service is a target, not one of them.
        (discovery,) = job["dns_sd_configs"]
        assert discovery["names"] == [spec.name]
        assert discovery["type"] == "A"
        assert discovery["port"] == APP_PORT


def test_prometheus_loads_the_rules_mounted_read_only() -> None:
    prometheus = services()["prometheus"]
    (pattern,) = prometheus_config()["rule_files"]
    folder, _, glob = pattern.rpartition("/")
    rules = bound(prometheus, folder)
    assert rules == (MONITORING / "rules").resolve()
    assert sorted(rules.glob(glob)) == [MONITORING.resolve() / "rules" / "commercekit.yml"]
    assert f":{PROMETHEUS_PORT}/" in " ".join(prometheus["healthcheck"]["test"])


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard() -> None:
    grafana = services()["grafana"]
    provisioning = bound(grafana, "/etc/grafana/provisioning")
    assert provisioning == (MONITORING / "grafana" / "provisioning").resolve()
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    assert urlsplit(source["url"]).netloc == f"prometheus:{PROMETHEUS_PORT}"
    assert set(depends_on(grafana)) == {"prometheus"}

    providers = yaml.safe_load((provisioning / "dashboards" / "commercekit.yml").read_text())
    (provider,) = providers["providers"]
    folder = bound(grafana, provider["options"]["path"])
    assert folder == (MONITORING / "grafana" / "dashboards").resolve()
    dashboards = sorted(folder.glob("*.json"))
    assert dashboards
    home = environment(grafana, {})["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(provider["options"]["path"] + "/")
    assert (folder / home.rsplit("/", 1)[1]) in dashboards
    for path in dashboards:
        panels = json.loads(path.read_text())["panels"]
        used = {
            (panel.get("datasource") or {}).get("uid") for panel in panels if panel["type"] != "row"
        }
        assert used == {source["uid"]}, path.name
    assert f":{GRAFANA_PORT}/" in " ".join(grafana["healthcheck"]["test"])


# ---------------------------------------------------------------- the image


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, list[str]]]:
    """(INSTRUCTION, arguments) of each instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    found = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            found.append((keyword.upper(), rest.split()))
    return found


def test_the_dockerfile_copies_only_what_exists() -> None:
    build = services()["user"]["build"]
    context = (COMPOSE_FILE.parent / build["context"]).resolve()
    assert (context / build["dockerfile"]).resolve() == DOCKERFILE.resolve()
    copies = [args for keyword, args in dockerfile_instructions() if keyword in ("COPY", "ADD")]
    assert copies
    for args in copies:
        assert not any(arg.startswith("--from") for arg in args), args
        sources = [arg for arg in args[:-1] if not arg.startswith("--")]
        assert sources, args
        for source in sources:
            assert (context / source).exists(), f"COPY {source}: not in the build context"


def test_the_image_runs_as_a_non_root_user() -> None:
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", ["python:3.11-slim"])
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users
    assert users[-1][0].split(":")[0] not in ("root", "0")
    runs = " ".join(" ".join(args) for keyword, args in instructions if keyword == "RUN")
    assert 'pip install ".[app]"' in runs


# ---------------------------------------------------------------- the gateway in the image

# What the official image's http { } block holds around conf.d/*.conf (nginx 1.27).
_IMAGE_MAIN_CONFIG = """\
{user}worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log notice;
events {{ worker_connections 1024; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    log_format main '$remote_addr - $remote_user [$time_local] "$request" '
                    '$status $body_bytes_sent "$http_referer" '
                    '"$http_user_agent" "$http_x_forwarded_for"';
    access_log {work}/access.log main;
    sendfile on;
    keepalive_timeout 65;
{temp}
    include {work}/conf.d/*.conf;
}}
"""

_IMAGE_ENV = ("NGINX_VERSION", "NJS_VERSION", "NJS_RELEASE", "PKG_RELEASE", "DYNPKG_RELEASE")
_IMAGE_ENV += ("PATH", "HOME", "HOSTNAME", "PWD", "SHLVL")


def envsubst_defined(template: str, env: Mapping[str, str]) -> str:
    """The image's 20-envsubst-on-templates.sh: only variables that are defined are replaced."""
    pattern = re.compile(r"\$(?:\{(\w+)\}|(\w+))")

    def replace(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        return env[name] if name in env else match[0]

    return pattern.sub(replace, template)


def test_the_gateway_template_works_as_the_image_renders_it(tmp_path: Path) -> None:
    gateway = services()["gateway"]
    env = dict.fromkeys(_IMAGE_ENV, "x") | environment(gateway, {})
    rendered = envsubst_defined(GATEWAY_CONFIG.read_text(), env)
    assert "${" not in rendered  # every placeholder is defined in the gateway's environment
    for name in PLACEHOLDERS:
        assert f"server {env[name]};" in rendered
    assert f"listen {env['PORT']};" in rendered
    assert "$refapp_request_id" in rendered
    assert "$binary_remote_addr" in rendered

    reason = NginxServer.missing()
    if reason is not None or not Path("/etc/nginx/mime.types").exists():
        pytest.skip(reason or "no /etc/nginx/mime.types")
    # Service names resolve only inside the compose network: check with loopback addresses.
    local = rendered
    for name in PLACEHOLDERS:
        local = local.replace(
            f"server {env[name]};", f"server 127.0.0.1:{env[name].split(':')[1]};"
        )
    for name in GATEWAY_FOLDERS:  # the image's folder, here under tmp_path
        local = local.replace(env[name], str(tmp_path / name.lower()))
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "default.conf").write_text(local)
    temp = "\n".join(
        f"    {kind}_temp_path {tmp_path / 'tmp' / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root root;\n" if os.geteuid() == 0 else ""
    main = tmp_path / "nginx.conf"
    main.write_text(_IMAGE_MAIN_CONFIG.format(user=user, work=tmp_path, temp=temp))
    (tmp_path / "tmp").mkdir()
    binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    assert binary is not None
    result = subprocess.run(
        [binary, "-t", "-p", str(tmp_path), "-c", str(main), "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
