"""Authentication: identities, passwords, access and refresh tokens, the gateway's check.

```python
from commercekit.auth import (
    AccessTokens, JWTSettings, PasswordHasher, PasswordHashingPool, RefreshTokens,
    normalize_identity,
)

hasher = PasswordHasher()
passwords = PasswordHashingPool(hasher)  # bounded, on threads of its own
tokens = AccessTokens(JWTSettings())
refresh = RefreshTokens(SqlRefreshTokenStore(engine))

user = find_user(email_key=normalize_identity(email))  # one key for every comparison
ok, _ = await passwords.verify_and_update(user.password_hash, password)
if ok:
    access = tokens.issue(user.id, role=user.role)
    session = await refresh.issue(user.id, role=user.role)
```

`PasswordHasher` and `AccessTokens` need ``commercekit[auth]`` (argon2-cffi,
PyJWT with cryptography); `SqlRefreshTokenStore` needs ``commercekit[postgres]``.
They are imported on first use, so the rest works without them.
"""

from typing import TYPE_CHECKING

from commercekit._lazy import lazy_attributes
from commercekit.auth.hashing import (
    HashingBusy,
    PasswordHashing,
    PasswordHashingPool,
    default_concurrency,
)
from commercekit.auth.identity import normalize_identity
from commercekit.auth.refresh import (
    InMemoryRefreshTokenStore,
    IssuedRefreshToken,
    RefreshFamily,
    RefreshTokens,
    RefreshTokenStore,
    RevokeReason,
    StoredRefreshToken,
    hash_refresh_token,
)
from commercekit.auth.verify import (
    USER_ID_HEADER,
    USER_ROLE_HEADER,
    Principal,
    bearer_token,
    verify,
)

if TYPE_CHECKING:
    from commercekit.auth.passwords import PasswordHasher
    from commercekit.auth.sql import SqlRefreshTokenStore
    from commercekit.auth.tokens import AccessClaims, AccessTokens, Algorithm, JWTSettings

__all__ = [
    "USER_ID_HEADER",
    "USER_ROLE_HEADER",
    "AccessClaims",
    "AccessTokens",
    "Algorithm",
    "HashingBusy",
    "InMemoryRefreshTokenStore",
    "IssuedRefreshToken",
    "JWTSettings",
    "PasswordHasher",
    "PasswordHashing",
    "PasswordHashingPool",
    "Principal",
    "RefreshFamily",
    "RefreshTokenStore",
    "RefreshTokens",
    "RevokeReason",
    "SqlRefreshTokenStore",
    "StoredRefreshToken",
    "bearer_token",
    "default_concurrency",
    "hash_refresh_token",
    "normalize_identity",
    "verify",
]

_LAZY = {
    # These need optional extras; import them only when asked for.
    "PasswordHasher": "commercekit.auth.passwords",
    "AccessClaims": "commercekit.auth.tokens",
    "AccessTokens": "commercekit.auth.tokens",
    "Algorithm": "commercekit.auth.tokens",
    "JWTSettings": "commercekit.auth.tokens",
    "SqlRefreshTokenStore": "commercekit.auth.sql",
}

__getattr__ = lazy_attributes(__name__, _LAZY)
