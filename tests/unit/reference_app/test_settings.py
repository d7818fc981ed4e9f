"""The reference app's settings: the original variable names, and safe defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError
from reference_app.settings import (
    EmailSettings,
    InventorySettings,
    PaymentSettings,
    ServiceSettings,
    UserSettings,
    WorkerSettings,
)

ENV_EXAMPLE = Path(__file__).parents[3] / "reference_app" / ".env.example"
STRONG = "k3Y-9vQ_x2LmZ7pR4tW8nB1cD6fG0hJ5sA"
ALL_SETTINGS = (
    ServiceSettings,
    UserSettings,
    InventorySettings,
    WorkerSettings,
    PaymentSettings,
    EmailSettings,
)


def _variables() -> set[str]:
    names: set[str] = set()
    for model in ALL_SETTINGS:
        for name, info in model.model_fields.items():
            names.add(name.upper())
            choices = getattr(info.validation_alias, "choices", ())
            names.update(str(c).upper() for c in choices)
    return names


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _variables():
        monkeypatch.delenv(name, raising=False)
    for name in ("COMMERCEKIT_JWT_SECRET", "COMMERCEKIT_JWT_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)


def test_original_postgres_names_build_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTGRES_USER", "shop")
    monkeypatch.setenv("POSTGRES_PASSWORD", "p@ss/word")
    monkeypatch.setenv("POSTGRES_DB", "user_db")
    monkeypatch.setenv("POSTGRES_HOST", "db")
    monkeypatch.setenv("POSTGRES_PORT", "6543")
    settings = ServiceSettings()
    assert settings.database_dsn == "postgresql+asyncpg://shop:p%40ss%2Fword@db:6543/user_db"
    assert "p@ss" not in repr(settings)


def test_postgres_defaults_to_localhost() -> None:
    assert (
        ServiceSettings().database_dsn == "postgresql+asyncpg://postgres@localhost:5432/commercekit"
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
    ],
)
def test_database_url_overrides_the_pieces(
    monkeypatch: pytest.MonkeyPatch, url: str, expected: str
) -> None:
    monkeypatch.setenv("POSTGRES_HOST", "ignored")
    monkeypatch.setenv("DATABASE_URL", url)
    assert ServiceSettings().database_dsn == expected


def test_redis_from_host_and_port_or_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_HOST", "redis")
    assert ServiceSettings().redis_dsn == "redis://redis:6379/0"
    monkeypatch.setenv("REDIS_PORT", "6380")
    assert ServiceSettings().redis_dsn == "redis://redis:6380/0"
    monkeypatch.setenv("REDIS_URL", "redis://cache:1/2")
    assert ServiceSettings().redis_dsn == "redis://cache:1/2"


def test_kafka_broker_under_either_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BROKER", "kafka:9092, other:9093")
    assert ServiceSettings().kafka_bootstrap_servers == ["kafka:9092", "other:9093"]
    monkeypatch.delenv("KAFKA_BROKER")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1234")
    assert ServiceSettings().kafka_broker == "127.0.0.1:1234"


def test_empty_values_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "")
    monkeypatch.setenv("POSTGRES_PORT", "")
    assert ServiceSettings().database_dsn.endswith("@localhost:5432/commercekit")


def test_admin_emails_are_comma_separated_and_case_insensitive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "development")
    monkeypatch.setenv("ADMIN_EMAILS", " Boss@Example.com ,ops@example.com,, ")
    settings = UserSettings()
    assert settings.admin_emails == {"boss@example.com", "ops@example.com"}
    assert settings.role_for("BOSS@example.com") == "admin"
    assert settings.role_for("someone@example.com") == "user"
    monkeypatch.delenv("ADMIN_EMAILS")
    assert UserSettings().admin_emails == frozenset()


def test_development_accepts_a_missing_or_short_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "Development")
    assert UserSettings().jwt.development
    monkeypatch.setenv("JWT_ACCESS_SECRET", "your_super_secret_key")
    assert UserSettings().jwt.secret is not None


@pytest.mark.parametrize("secret", [None, "your_super_secret_key", "secret", "a" * 64, "changeme"])
def test_production_refuses_missing_default_short_or_repetitive_secrets(
    monkeypatch: pytest.MonkeyPatch, secret: str | None
) -> None:
    if secret is not None:
        monkeypatch.setenv("JWT_ACCESS_SECRET", secret)
    with pytest.raises(ValidationError, match="JWT_ACCESS_SECRET"):
        UserSettings()  # production is the default


def test_production_accepts_a_strong_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("JWT_ACCESS_SECRET", STRONG)
    settings = UserSettings()
    assert not settings.development
    assert settings.jwt.secret is not None
    assert settings.jwt.secret.get_secret_value() == STRONG


def test_unknown_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "staging-ish")
    with pytest.raises(ValidationError):
        ServiceSettings()


def test_service_knobs_have_the_original_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    worker = WorkerSettings()
    assert (worker.reservation_ttl_seconds, worker.sweep_interval_seconds) == (900, 10.0)
    assert PaymentSettings().payment_success_rate == 0.8
    assert EmailSettings().resend_api_key is None
    monkeypatch.setenv("PAYMENT_SUCCESS_RATE", "1.5")
    with pytest.raises(ValidationError):
        PaymentSettings()
    monkeypatch.setenv("RESERVATION_TTL_SECONDS", "5")
    monkeypatch.setenv("RESEND_API_KEY", "re_123")
    assert InventorySettings().reservation_ttl_seconds == 5
    key = EmailSettings().resend_api_key
    assert key is not None
    assert key.get_secret_value() == "re_123"


def test_env_example_lists_every_variable() -> None:
    listed = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.MULTILINE))
    documented_aliases = {"KAFKA_BOOTSTRAP_SERVERS"}  # named in the KAFKA_BROKER comment
    assert listed == _variables() - documented_aliases
