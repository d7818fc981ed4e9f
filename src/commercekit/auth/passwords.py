"""Password hashing: argon2id for new hashes, bcrypt hashes still verified.

```python
hasher = PasswordHasher()
stored = hasher.hash("correct horse battery staple")
ok, new_hash = hasher.verify_and_update(stored, attempt)
if ok and new_hash is not None:
    save(user, new_hash)  # parameters changed, or an old bcrypt hash: upgrade it now
```

Hashing is deliberately slow (tens of milliseconds): in async code call it
through `asyncio.to_thread` so the event loop keeps serving other requests.
"""

from __future__ import annotations

import importlib
from typing import Any

from commercekit.errors import ConfigurationError, MissingExtraError

try:
    import argon2
    from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtraError("auth", __name__) from exc

__all__ = ["PasswordHasher", "is_bcrypt_hash"]

_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")


def is_bcrypt_hash(password_hash: str) -> bool:
    """Whether `password_hash` is a bcrypt hash (``$2a$``, ``$2b$`` or ``$2y$``)."""
    return password_hash.startswith(_BCRYPT_PREFIXES)


def _bcrypt() -> Any:
    try:
        return importlib.import_module("bcrypt")
    except ImportError as exc:
        raise ConfigurationError(
            "this password hash is bcrypt: pip install bcrypt to verify it"
        ) from exc


class PasswordHasher:
    """Hashes passwords with argon2id and verifies argon2 and bcrypt hashes.

    The defaults are argon2-cffi's (RFC 9106's low-memory profile: 64 MiB,
    3 passes, 4 lanes). Lower them only in tests, where speed matters more
    than resistance to cracking.

    Args:
        time_cost: argon2 passes over the memory.
        memory_cost: argon2 memory in KiB.
        parallelism: argon2 lanes.
        hash_len: length of the raw hash in bytes.
        salt_len: length of the random salt in bytes.
    """

    def __init__(
        self,
        *,
        time_cost: int = argon2.DEFAULT_TIME_COST,
        memory_cost: int = argon2.DEFAULT_MEMORY_COST,
        parallelism: int = argon2.DEFAULT_PARALLELISM,
        hash_len: int = argon2.DEFAULT_HASH_LENGTH,
        salt_len: int = argon2.DEFAULT_RANDOM_SALT_LENGTH,
    ) -> None:
        self._argon2 = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_cost,
            parallelism=parallelism,
            hash_len=hash_len,
            salt_len=salt_len,
            type=argon2.Type.ID,
        )
        self._dummy_hash: str | None = None

    def hash(self, password: str) -> str:
        """A new argon2id hash of `password` (a PHC string with its salt and parameters)."""
        return self._argon2.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether `password` matches `password_hash`.

        Pass None for a user that does not exist: the call still spends the
        time a real check takes and returns False, so response times do not
        tell which accounts exist. A hash in a format this hasher does not
        know is never a match.
        """
        if password_hash is None:
            self._verify_argon2(self._dummy(), password)
            return False
        if is_bcrypt_hash(password_hash):
            return self._verify_bcrypt(password_hash, password)
        return self._verify_argon2(password_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether the hash should be replaced by a fresh one (old parameters, or bcrypt)."""
        if is_bcrypt_hash(password_hash):
            return True
        try:
            return self._argon2.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True

    def verify_and_update(
        self, password_hash: str | None, password: str
    ) -> tuple[bool, str | None]:
        """Verify, and on a match return a new hash when the stored one is outdated.

        Returns:
            ``(matches, new_hash)``: store `new_hash` in place of the old one
            when it is not None.
        """
        if not self.verify(password_hash, password):
            return False, None
        assert password_hash is not None, "verify() is False without a hash"
        return True, self.hash(password) if self.needs_rehash(password_hash) else None

    def _verify_argon2(self, password_hash: str, password: str) -> bool:
        try:
            return self._argon2.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def _verify_bcrypt(self, password_hash: str, password: str) -> bool:
        bcrypt = _bcrypt()
        try:
            return bool(bcrypt.checkpw(password.encode(), password_hash.encode("ascii")))
        except (ValueError, UnicodeEncodeError):  # malformed hash, or a password over 72 bytes
            return False

    def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = self.hash("commercekit: no such user")
        return self._dummy_hash
