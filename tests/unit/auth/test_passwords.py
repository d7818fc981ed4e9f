"""argon2id hashing, upgrades of outdated hashes, bcrypt verification."""

from __future__ import annotations

import importlib
import sys

import pytest

from commercekit.auth import PasswordHasher
from commercekit.auth.passwords import is_bcrypt_hash
from commercekit.errors import MissingExtraError

FAST = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}


@pytest.fixture
def hasher() -> PasswordHasher:
    return PasswordHasher(**FAST)


def test_hashes_are_salted_argon2id(hasher: PasswordHasher) -> None:
    first, second = hasher.hash("hunter22"), hasher.hash("hunter22")
    assert first.startswith("$argon2id$")
    assert first != second
    assert "hunter22" not in first


def test_verify_accepts_only_the_password(hasher: PasswordHasher) -> None:
    stored = hasher.hash("correct horse")
    assert hasher.verify(stored, "correct horse")
    assert not hasher.verify(stored, "correct horse ")
    assert not hasher.verify(stored, "")


def test_unknown_user_and_garbage_hashes_never_match(hasher: PasswordHasher) -> None:
    assert not hasher.verify(None, "anything")
    assert not hasher.verify("not a hash", "not a hash")
    assert not hasher.verify("$argon2id$v=19$broken", "x")
    assert hasher.needs_rehash("not a hash")


def test_changed_parameters_upgrade_the_hash_on_login(hasher: PasswordHasher) -> None:
    stored = hasher.hash("s3cret")
    stronger = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    assert not hasher.needs_rehash(stored)
    assert stronger.needs_rehash(stored)

    ok, new_hash = stronger.verify_and_update(stored, "s3cret")
    assert ok
    assert new_hash is not None
    assert stronger.verify(new_hash, "s3cret")
    assert not stronger.needs_rehash(new_hash)
    assert stronger.verify_and_update(new_hash, "s3cret") == (True, None)
    assert stronger.verify_and_update(stored, "wrong") == (False, None)


def test_bcrypt_hashes_verify_and_upgrade_to_argon2id(hasher: PasswordHasher) -> None:
    bcrypt = pytest.importorskip("bcrypt")
    legacy = bcrypt.hashpw(b"old password", bcrypt.gensalt(rounds=4)).decode()
    assert is_bcrypt_hash(legacy)
    assert hasher.verify(legacy, "old password")
    assert not hasher.verify(legacy, "new password")
    assert hasher.needs_rehash(legacy)

    ok, upgraded = hasher.verify_and_update(legacy, "old password")
    assert ok
    assert upgraded is not None
    assert upgraded.startswith("$argon2id$")
    assert hasher.verify(upgraded, "old password")


@pytest.mark.parametrize(
    ("module", "dependency"),
    [("commercekit.auth.passwords", "argon2"), ("commercekit.auth.tokens", "jwt")],
)
def test_importing_without_the_extra_names_it(
    monkeypatch: pytest.MonkeyPatch, module: str, dependency: str
) -> None:
    monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, dependency, None)
    with pytest.raises(MissingExtraError, match=r"commercekit\[auth\]"):
        importlib.import_module(module)
