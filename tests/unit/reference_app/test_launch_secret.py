"""The launcher never signs tokens with the development secret unless told to, and says so."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from reference_app import launch
from reference_app.launch import SECRET_VARIABLES, jwt_secret_env

from commercekit.auth.tokens import DEVELOPMENT_SECRET

ENV_EXAMPLE = Path(launch.__file__).parent / ".env.example"


class Started(Exception):
    """Raised by the fake stack instead of starting anything."""


@pytest.fixture
def no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*SECRET_VARIABLES, "ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)


def launched_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The settings `main()` hands the stack (the stack itself is not started)."""
    seen: dict[str, str] = {}

    class FakeStack:
        def __init__(self, workdir: Path, *, env: Mapping[str, str], **_: Any) -> None:
            seen.update(env)

        def __enter__(self) -> FakeStack:
            raise Started

        def __exit__(self, *exc: object) -> None:
            pass

    monkeypatch.setattr(launch, "LocalStack", FakeStack)
    monkeypatch.setattr(launch.signal, "signal", lambda *_: None)  # keep pytest's Ctrl-C
    with pytest.raises(Started):
        launch.main([])
    return seen


@pytest.mark.usefixtures("no_secret")
def test_each_launch_without_a_secret_signs_with_a_random_one(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="reference_app.launch"):
        first = launched_env(monkeypatch)
        second = launched_env(monkeypatch)
    assert first["ENVIRONMENT"] == "development"
    secrets = {first["JWT_ACCESS_SECRET"], second["JWT_ACCESS_SECRET"]}
    assert len(secrets) == 2, "one secret per launch"
    for secret in secrets:
        assert secret != DEVELOPMENT_SECRET
        assert len(secret.encode()) >= 48  # past HS256's 32 bytes, as production wants
    assert "random secret made for this launch" in caplog.text


@pytest.mark.usefixtures("no_secret")
@pytest.mark.parametrize("name", SECRET_VARIABLES)
def test_a_given_secret_is_kept(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "a-secret-of-the-shop-" + "x1y2z3" * 6)
    assert "JWT_ACCESS_SECRET" not in launched_env(monkeypatch)
    assert jwt_secret_env({name: "given"}) == {}


def test_an_empty_secret_counts_as_unset() -> None:
    assert jwt_secret_env({"JWT_ACCESS_SECRET": ""})["JWT_ACCESS_SECRET"]


@pytest.mark.parametrize("name", SECRET_VARIABLES)
def test_the_development_secret_given_is_said_loudly(
    caplog: pytest.LogCaptureFixture, name: str
) -> None:
    with caplog.at_level(logging.WARNING, logger="reference_app.launch"):
        assert jwt_secret_env({name: DEVELOPMENT_SECRET}) == {}
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "development secret" in record.getMessage()
    assert "anyone can mint tokens" in record.getMessage()


def test_env_example_holds_no_working_secret() -> None:
    values = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    )
    for name in SECRET_VARIABLES:
        assert not values.get(name), name
    # Development would take the empty secret as commercekit's public one.
    assert values["ENVIRONMENT"] == "production"
    assert DEVELOPMENT_SECRET not in ENV_EXAMPLE.read_text()
