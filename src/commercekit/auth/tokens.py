"""Short-lived JWT access tokens (PyJWT): issued by the user service, checked everywhere.

```python
tokens = AccessTokens(JWTSettings())  # COMMERCEKIT_JWT_SECRET etc. from the environment
token = tokens.issue("user-42", role="admin")
claims = tokens.decode(token)  # raises InvalidToken / TokenExpired
assert (claims.user_id, claims.role) == ("user-42", "admin")
```

Decoding accepts only the one configured algorithm (so neither ``alg: none``
nor an HS256 token signed with an RSA public key gets through), only the
``at+jwt`` token type, and requires ``exp``, ``iat``, ``iss``, ``aud`` and
``sub`` with the configured issuer and audience.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from commercekit.errors import (
    ConfigurationError,
    InvalidToken,
    MissingExtraError,
    TokenExpired,
    WeakSecret,
)

try:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        PublicFormat,
        load_pem_private_key,
        load_pem_public_key,
    )
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtraError("auth", __name__) from exc

__all__ = [
    "DEVELOPMENT_SECRET",
    "AccessClaims",
    "AccessTokens",
    "Algorithm",
    "JWTSettings",
]

Algorithm = Literal[
    "HS256", "HS384", "HS512",
    "RS256", "RS384", "RS512",
    "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512",
    "EdDSA",
]  # fmt: skip
"""The signing algorithms `AccessTokens` supports (``none`` is not one of them)."""

DEVELOPMENT_SECRET = "commercekit-development-only-secret-never-in-production"  # noqa: S105 - refused outside development
"""The HS* secret used in development when none is set; refused everywhere else."""

_DEVELOPMENT_ENVIRONMENTS = frozenset({"development", "dev", "local", "test"})
_KNOWN_DEFAULTS = frozenset(
    {
        DEVELOPMENT_SECRET,
        "secret",
        "changeme",
        "change-me",
        "change_me",
        "changethis",
        "your-256-bit-secret",
        "your-secret-key",
        "supersecret",
        "jwt-secret",
        "jwt_secret",
        "secret-key",
        "secret_key",
    }
)
_MIN_SECRET_DISTINCT_CHARS = 8
_MIN_RSA_BITS = 2048
_EC_CURVES: Mapping[str, type[ec.EllipticCurve]] = {
    "ES256": ec.SECP256R1,
    "ES384": ec.SECP384R1,
    "ES512": ec.SECP521R1,
}
_TOKEN_TYPE = "at+jwt"  # noqa: S105 - RFC 9068: an access token, not an ID token or another JWT
_MAX_TOKEN_LENGTH = 8192
_REGISTERED = frozenset({"sub", "role", "iat", "nbf", "exp", "iss", "aud", "jti"})


class JWTSettings(BaseSettings):
    """How access tokens are signed and checked; read from ``COMMERCEKIT_JWT_*`` variables.

    HS* algorithms use `secret`; outside development it must be at least as
    long as the hash (32 bytes for HS256) and not a known default. RS*, PS*,
    ES* and EdDSA use PEM keys: a service that only verifies tokens (the
    gateway) needs only `public_key`. An unsafe configuration fails when the
    settings are created (a pydantic ``ValidationError`` wrapping `WeakSecret`
    or `ConfigurationError`).

    Attributes:
        environment: ``development``, ``dev``, ``local`` and ``test`` relax the
            secret policy (and supply `DEVELOPMENT_SECRET`); anything else is
            treated as production.
        algorithm: the one algorithm tokens are signed and accepted with.
        secret: the HMAC secret of the HS* algorithms.
        private_key: PEM private key (unencrypted) to sign with.
        public_key: PEM public key to verify with; derived from the private key if unset.
        issuer: the ``iss`` claim issued and required.
        audience: the ``aud`` claim issued and required.
        access_ttl: lifetime of an access token; keep it short (minutes). In
            the environment: seconds, or an ISO 8601 duration.
        leeway: clock skew tolerated when checking ``exp`` and ``iat``.
        key_id: the ``kid`` header, for key rotation.
    """

    model_config = SettingsConfigDict(env_prefix="COMMERCEKIT_JWT_", extra="ignore", frozen=True)

    environment: str = "production"
    algorithm: Algorithm = "HS256"
    secret: SecretStr | None = None
    private_key: SecretStr | None = None
    public_key: str | None = None
    issuer: str = "commercekit"
    audience: str = "commercekit"
    access_ttl: dt.timedelta = dt.timedelta(minutes=15)
    leeway: dt.timedelta = dt.timedelta(seconds=5)
    key_id: str | None = None

    @field_validator("access_ttl", "leeway", mode="before")
    @classmethod
    def _seconds(cls, value: object) -> object:
        # An environment variable of plain digits means seconds (ISO 8601 works too).
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        return value

    @property
    def development(self) -> bool:
        """Whether `environment` names a development or test setup."""
        return self.environment.strip().lower() in _DEVELOPMENT_ENVIRONMENTS

    @model_validator(mode="after")
    def _check_keys(self) -> JWTSettings:
        if self.access_ttl <= dt.timedelta(0):
            raise ConfigurationError("access_ttl must be positive")
        _load_keys(self)
        return self


@dataclass(frozen=True, slots=True)
class _Keys:
    signing: Any
    verifying: Any


def _load_keys(settings: JWTSettings) -> _Keys:
    algorithm = settings.algorithm
    if algorithm.startswith("HS"):
        if settings.private_key is not None or settings.public_key is not None:
            raise ConfigurationError(f"{algorithm} signs with `secret`, not with PEM keys")
        secret = _hmac_secret(settings)
        return _Keys(signing=secret, verifying=secret)
    if settings.secret is not None:
        raise ConfigurationError(f"{algorithm} signs with PEM keys, not with `secret`")
    private = public = None
    try:
        if settings.private_key is not None:
            private = load_pem_private_key(settings.private_key.get_secret_value().encode(), None)
            public = private.public_key()
        if settings.public_key is not None:
            given = load_pem_public_key(settings.public_key.encode())
            if public is not None and _der(public) != _der(given):
                raise ConfigurationError("public_key does not belong to private_key")
            public = given
    except (ValueError, TypeError) as exc:  # not PEM, encrypted, or unsupported
        raise ConfigurationError(f"cannot load the {algorithm} key: {exc}") from exc
    if public is None:
        raise ConfigurationError(f"{algorithm} needs private_key (to sign) or public_key")
    _check_key_kind(algorithm, public)
    return _Keys(signing=private, verifying=public)


def _hmac_secret(settings: JWTSettings) -> bytes:
    if settings.secret is None:
        if settings.development:
            return DEVELOPMENT_SECRET.encode()
        raise ConfigurationError(f"{settings.algorithm} needs a secret: set COMMERCEKIT_JWT_SECRET")
    secret = settings.secret.get_secret_value()
    raw = secret.encode()
    if settings.development:
        return raw
    minimum = int(settings.algorithm[2:]) // 8
    if len(raw) < minimum:
        raise WeakSecret(f"a {settings.algorithm} secret needs at least {minimum} bytes")
    if secret.strip().lower() in _KNOWN_DEFAULTS:
        raise WeakSecret("the JWT secret is a well-known default: generate a random one")
    if len(set(secret)) < _MIN_SECRET_DISTINCT_CHARS:
        raise WeakSecret("the JWT secret is too repetitive: generate a random one")
    return raw


def _der(public: Any) -> bytes:
    return bytes(public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))


def _check_key_kind(algorithm: str, public: Any) -> None:
    if algorithm[:2] in {"RS", "PS"}:
        if not isinstance(public, rsa.RSAPublicKey):
            raise WeakSecret(f"{algorithm} needs an RSA key")
        if public.key_size < _MIN_RSA_BITS:
            raise WeakSecret(f"{algorithm} needs an RSA key of at least {_MIN_RSA_BITS} bits")
    elif algorithm.startswith("ES"):
        curve = _EC_CURVES[algorithm]
        if not isinstance(public, ec.EllipticCurvePublicKey) or not isinstance(public.curve, curve):
            raise WeakSecret(f"{algorithm} needs an EC key on {curve.name}")
    elif not isinstance(public, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        raise WeakSecret("EdDSA needs an Ed25519 or Ed448 key")


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """What a verified access token says.

    Attributes:
        user_id: the ``sub`` claim.
        role: the ``role`` claim (``user``, ``admin``...).
        issued_at: the ``iat`` claim.
        expires_at: the ``exp`` claim.
        token_id: the ``jti`` claim (empty if the token had none).
        claims: every claim, as decoded.
    """

    user_id: str
    role: str
    issued_at: dt.datetime
    expires_at: dt.datetime
    token_id: str
    claims: Mapping[str, Any] = field(repr=False)


class AccessTokens:
    """Issues and verifies access tokens with one `JWTSettings`.

    Args:
        settings: algorithm, keys, issuer, audience and lifetimes.
    """

    def __init__(self, settings: JWTSettings) -> None:
        self.settings = settings
        self._keys = _load_keys(settings)

    def issue(
        self,
        user_id: str,
        *,
        role: str = "user",
        claims: Mapping[str, Any] | None = None,
        ttl: dt.timedelta | None = None,
        now: dt.datetime | None = None,
    ) -> str:
        """A signed access token for `user_id` with `role`.

        Args:
            user_id: the subject (``sub``).
            role: the ``role`` claim the gateway passes downstream.
            claims: extra private claims; they cannot replace registered ones.
            ttl: lifetime instead of ``settings.access_ttl``.
            now: the issue time (tests); the current time by default.
        """
        if self._keys.signing is None:
            raise ConfigurationError("these settings have no private key: they can only verify")
        if not user_id:
            raise ConfigurationError("user_id must not be empty")
        extra = dict(claims or {})
        clash = _REGISTERED & extra.keys()
        if clash:
            raise ConfigurationError(f"claims cannot replace registered claims: {sorted(clash)}")
        issued = now or dt.datetime.now(dt.UTC)
        payload = {
            **extra,
            "sub": user_id,
            "role": role,
            "iss": self.settings.issuer,
            "aud": self.settings.audience,
            "iat": issued,
            "exp": issued + (ttl if ttl is not None else self.settings.access_ttl),
            "jti": uuid.uuid4().hex,
        }
        headers: dict[str, Any] = {"typ": _TOKEN_TYPE}
        if self.settings.key_id is not None:
            headers["kid"] = self.settings.key_id
        return jwt.encode(
            payload, self._keys.signing, algorithm=self.settings.algorithm, headers=headers
        )

    def decode(self, token: str) -> AccessClaims:
        """Verify `token` and return its claims.

        Raises:
            TokenExpired: the token is genuine but past ``exp`` (plus the leeway).
            InvalidToken: anything else is wrong: signature, algorithm, type,
                issuer, audience, a missing claim, or not a JWT at all.
        """
        if not token or len(token) > _MAX_TOKEN_LENGTH:
            raise InvalidToken("not an access token")
        algorithm = self.settings.algorithm
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != algorithm:
                raise InvalidToken(f"access tokens are signed with {algorithm}")
            if header.get("typ") != _TOKEN_TYPE:
                raise InvalidToken("not an access token")
            payload = jwt.decode(
                token,
                self._keys.verifying,
                algorithms=[algorithm],
                audience=self.settings.audience,
                issuer=self.settings.issuer,
                leeway=self.settings.leeway,
                options={"require": ["exp", "iat", "iss", "aud", "sub"], "strict_aud": True},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenExpired("the access token has expired") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"invalid access token: {exc}") from exc
        user_id, role, token_id = payload["sub"], payload.get("role"), payload.get("jti", "")
        if not (isinstance(user_id, str) and user_id and isinstance(role, str) and role):
            raise InvalidToken("invalid access token: bad sub or role claim")
        if not isinstance(token_id, str):
            raise InvalidToken("invalid access token: bad jti claim")
        return AccessClaims(
            user_id=user_id,
            role=role,
            issued_at=dt.datetime.fromtimestamp(payload["iat"], dt.UTC),
            expires_at=dt.datetime.fromtimestamp(payload["exp"], dt.UTC),
            token_id=token_id,
            claims=payload,
        )
