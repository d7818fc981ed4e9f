"""JWT access tokens: what verifies, and everything that must not."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from pydantic import ValidationError

from commercekit.auth import AccessTokens, JWTSettings, Principal, verify
from commercekit.auth.tokens import DEVELOPMENT_SECRET
from commercekit.errors import ConfigurationError, InvalidToken, TokenExpired, WeakSecret


def _pem_private(key: Any) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _pem_public(key: Any) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(autouse=True)
def _no_jwt_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SECRET", "ALGORITHM", "ENVIRONMENT", "PRIVATE_KEY", "PUBLIC_KEY"):
        monkeypatch.delenv(f"COMMERCEKIT_JWT_{name}", raising=False)


@pytest.fixture
def settings() -> JWTSettings:
    return JWTSettings(secret=secrets.token_urlsafe(48))


@pytest.fixture
def tokens(settings: JWTSettings) -> AccessTokens:
    return AccessTokens(settings)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _claims(**overrides: Any) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    claims: dict[str, Any] = {
        "sub": "user-1",
        "role": "user",
        "iss": "commercekit",
        "aud": "commercekit",
        "iat": now,
        "exp": now + dt.timedelta(minutes=5),
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


# ---------------------------------------------------------------- what verifies


def test_an_issued_token_verifies_with_its_claims(tokens: AccessTokens) -> None:
    token = tokens.issue("user-42", role="admin", claims={"tenant": "eu"})
    claims = tokens.decode(token)
    assert (claims.user_id, claims.role) == ("user-42", "admin")
    assert claims.claims["tenant"] == "eu"
    assert claims.expires_at - claims.issued_at == dt.timedelta(minutes=15)
    assert len(claims.token_id) == 32
    assert jwt.get_unverified_header(token)["typ"] == "at+jwt"
    assert tokens.decode(tokens.issue("user-42")).token_id != claims.token_id


def test_registered_claims_cannot_be_overridden(tokens: AccessTokens) -> None:
    with pytest.raises(ConfigurationError, match="registered"):
        tokens.issue("user-1", claims={"sub": "admin"})
    with pytest.raises(ConfigurationError):
        tokens.issue("")


def test_verify_returns_the_user_id_and_role_for_the_gateway(tokens: AccessTokens) -> None:
    token = tokens.issue("user-7", role="admin")
    principal = verify(f"Bearer {token}", tokens)
    expires_at = tokens.decode(token).expires_at
    assert principal == Principal(user_id="user-7", role="admin", expires_at=expires_at)
    assert principal.headers() == {"X-User-Id": "user-7", "X-User-Role": "admin"}
    assert verify(f"bearer   {token} ", tokens) == principal


def test_a_verify_answer_is_cacheable_at_most_until_a_second_before_expiry() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    principal = Principal("u", "user", expires_at=now + dt.timedelta(seconds=90))
    assert principal.cacheable_for(60, now=now) == 60
    assert principal.cacheable_for(600, now=now) == 89
    assert principal.cacheable_for(600, now=now + dt.timedelta(seconds=88.5)) == 0
    assert principal.cacheable_for(600, now=now + dt.timedelta(seconds=120)) == 0
    assert principal.cacheable_for(0, now=now) == 0
    assert Principal("u", "user").cacheable_for(60, now=now) == 0  # no known expiry


def test_a_spread_makes_answers_cached_together_expire_apart() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    principal = Principal("u", "user", expires_at=now + dt.timedelta(seconds=900))
    seconds = [principal.cacheable_for(60, spread=0.2, now=now) for _ in range(2000)]
    assert min(seconds) >= 48
    assert max(seconds) <= 60
    assert len(set(seconds)) >= 10  # 48 to 60: spread, not one second for all
    # Never past the expiry, spread or not.
    soon = Principal("u", "user", expires_at=now + dt.timedelta(seconds=10))
    assert {soon.cacheable_for(60, spread=0.2, now=now) for _ in range(100)} == {9}
    with pytest.raises(ValueError, match="spread"):
        principal.cacheable_for(60, spread=1.5)


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "token"])
def test_verify_rejects_a_missing_or_foreign_header(
    tokens: AccessTokens, header: str | None
) -> None:
    with pytest.raises(InvalidToken):
        verify(header, tokens)


# ---------------------------------------------------------------- what must not


def test_a_tampered_payload_is_rejected(tokens: AccessTokens) -> None:
    header, payload, signature = tokens.issue("user-1", role="user").split(".")
    claims = json.loads(_unb64(payload))
    claims["role"] = "admin"
    forged = ".".join([header, _b64(json.dumps(claims).encode()), signature])
    with pytest.raises(InvalidToken, match="Signature verification failed"):
        tokens.decode(forged)


def test_a_tampered_signature_is_rejected(tokens: AccessTokens) -> None:
    header, payload, signature = tokens.issue("user-1").split(".")
    flipped = _b64(bytes(b ^ 1 for b in _unb64(signature)))
    with pytest.raises(InvalidToken):
        tokens.decode(f"{header}.{payload}.{flipped}")


def test_an_expired_token_is_rejected(tokens: AccessTokens) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    with pytest.raises(TokenExpired):
        tokens.decode(tokens.issue("user-1", now=past))
    with pytest.raises(TokenExpired):
        verify("Bearer " + tokens.issue("user-1", ttl=dt.timedelta(seconds=-30)), tokens)


def test_a_token_expired_within_the_leeway_still_verifies(tokens: AccessTokens) -> None:
    token = tokens.issue("user-1", ttl=dt.timedelta(seconds=-2))  # leeway is 5 s
    assert tokens.decode(token).user_id == "user-1"


def test_a_token_signed_with_another_key_is_rejected(tokens: AccessTokens) -> None:
    other = AccessTokens(JWTSettings(secret=secrets.token_urlsafe(48)))
    with pytest.raises(InvalidToken, match="Signature verification failed"):
        tokens.decode(other.issue("user-1"))


@pytest.mark.parametrize(
    ("field", "value"), [("audience", "another-api"), ("issuer", "https://evil.example")]
)
def test_another_audience_or_issuer_is_rejected(
    settings: JWTSettings, field: str, value: str
) -> None:
    foreign = AccessTokens(settings.model_copy(update={field: value}))
    with pytest.raises(InvalidToken):
        AccessTokens(settings).decode(foreign.issue("user-1"))


def test_alg_none_is_rejected(tokens: AccessTokens) -> None:
    unsigned = jwt.encode(_claims(), None, algorithm="none", headers={"typ": "at+jwt"})
    assert unsigned.endswith(".")
    with pytest.raises(InvalidToken, match="signed with HS256"):
        tokens.decode(unsigned)

    # The genuine signature kept, with the header rewritten to alg none:
    _, payload, signature = tokens.issue("user-1").split(".")
    header = _b64(json.dumps({"alg": "none", "typ": "at+jwt"}).encode())
    for forged in (f"{header}.{payload}.", f"{header}.{payload}.{signature}"):
        with pytest.raises(InvalidToken):
            tokens.decode(forged)


def test_hs256_signed_with_the_rsa_public_key_is_rejected(rsa_key: rsa.RSAPrivateKey) -> None:
    public_pem = _pem_public(rsa_key)
    tokens = AccessTokens(JWTSettings(algorithm="RS256", public_key=public_pem))
    header = _b64(json.dumps({"alg": "HS256", "typ": "at+jwt"}).encode())
    payload = _b64(json.dumps(_epoch(_claims())).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = hmac.new(public_pem.encode(), signing_input, hashlib.sha256).digest()
    with pytest.raises(InvalidToken, match="signed with RS256"):
        tokens.decode(f"{header}.{payload}.{_b64(signature)}")


def test_an_rs256_token_is_rejected_where_hs256_is_configured(
    tokens: AccessTokens, rsa_key: rsa.RSAPrivateKey
) -> None:
    rs = AccessTokens(JWTSettings(algorithm="RS256", private_key=_pem_private(rsa_key)))
    with pytest.raises(InvalidToken):
        tokens.decode(rs.issue("user-1"))


def _epoch(claims: dict[str, Any]) -> dict[str, Any]:
    return {k: int(v.timestamp()) if isinstance(v, dt.datetime) else v for k, v in claims.items()}


@pytest.mark.parametrize("missing", ["exp", "iat", "iss", "aud", "sub"])
def test_a_token_missing_a_required_claim_is_rejected(
    settings: JWTSettings, tokens: AccessTokens, missing: str
) -> None:
    assert settings.secret is not None
    token = jwt.encode(
        _claims(**{missing: None}),
        settings.secret.get_secret_value(),
        algorithm="HS256",
        headers={"typ": "at+jwt"},
    )
    with pytest.raises(InvalidToken, match=missing):
        tokens.decode(token)


def test_a_jwt_that_is_not_an_access_token_is_rejected(
    settings: JWTSettings, tokens: AccessTokens
) -> None:
    assert settings.secret is not None
    id_token = jwt.encode(_claims(), settings.secret.get_secret_value(), algorithm="HS256")
    with pytest.raises(InvalidToken, match="not an access token"):
        tokens.decode(id_token)  # typ JWT, not at+jwt


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "x" * 10_000])
def test_garbage_is_rejected(tokens: AccessTokens, garbage: str) -> None:
    with pytest.raises(InvalidToken):
        tokens.decode(garbage)


# ---------------------------------------------------------------- other algorithms


def test_rs256_ps256_es256_and_eddsa_round_trip(rsa_key: rsa.RSAPrivateKey) -> None:
    cases: list[tuple[Any, Any]] = [
        ("RS256", rsa_key),
        ("PS256", rsa_key),
        ("ES256", ec.generate_private_key(ec.SECP256R1())),
        ("EdDSA", ed25519.Ed25519PrivateKey.generate()),
    ]
    for algorithm, key in cases:
        issuer = AccessTokens(JWTSettings(algorithm=algorithm, private_key=_pem_private(key)))
        gateway = AccessTokens(JWTSettings(algorithm=algorithm, public_key=_pem_public(key)))
        token = issuer.issue("user-9", role="admin")
        assert jwt.get_unverified_header(token)["alg"] == algorithm
        assert gateway.decode(token).role == "admin"
        with pytest.raises(ConfigurationError, match="only verify"):
            gateway.issue("user-9")


def test_a_public_key_must_match_the_private_key(rsa_key: rsa.RSAPrivateKey) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(ValidationError, match="does not belong"):
        JWTSettings(
            algorithm="RS256", private_key=_pem_private(rsa_key), public_key=_pem_public(other)
        )


# ---------------------------------------------------------------- the secret policy


def _cause(exc: ValidationError) -> object:
    return exc.errors()[0]["ctx"]["error"]


@pytest.mark.parametrize(
    ("algorithm", "secret"),
    [
        ("HS256", secrets.token_hex(15)),  # 30 bytes
        ("HS384", secrets.token_hex(20)),  # 40 bytes < 48
        ("HS256", DEVELOPMENT_SECRET),
        ("HS256", "CHANGEME"),
        ("HS256", "ab" * 32),
    ],
)
def test_weak_secrets_are_refused_outside_development(algorithm: str, secret: str) -> None:
    with pytest.raises(ValidationError) as caught:
        JWTSettings(algorithm=algorithm, secret=secret)
    assert isinstance(_cause(caught.value), WeakSecret)


def test_production_needs_a_secret_and_development_has_a_default() -> None:
    with pytest.raises(ValidationError, match="COMMERCEKIT_JWT_SECRET"):
        JWTSettings()
    dev = AccessTokens(JWTSettings(environment="development"))
    assert dev.decode(dev.issue("user-1")).user_id == "user-1"


def test_development_accepts_a_short_secret_but_pyjwt_warns() -> None:
    dev = AccessTokens(JWTSettings(environment="test", secret="short"))
    with pytest.warns(jwt.InsecureKeyLengthWarning):
        token = dev.issue("user-1")
    with pytest.warns(jwt.InsecureKeyLengthWarning):
        assert dev.decode(token).user_id == "user-1"


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = secrets.token_urlsafe(48)
    monkeypatch.setenv("COMMERCEKIT_JWT_SECRET", secret)
    monkeypatch.setenv("COMMERCEKIT_JWT_ACCESS_TTL", "60")
    settings = JWTSettings()
    assert settings.secret is not None
    assert settings.secret.get_secret_value() == secret
    assert settings.access_ttl == dt.timedelta(seconds=60)
    assert secret not in repr(settings)


def test_the_wrong_kind_of_key_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    p384 = ec.generate_private_key(ec.SECP384R1())
    for algorithm, key in [("RS256", small), ("ES256", p384), ("EdDSA", rsa_key)]:
        with pytest.raises(ValidationError) as caught:
            JWTSettings(algorithm=algorithm, public_key=_pem_public(key))
        assert isinstance(_cause(caught.value), WeakSecret)
    with pytest.raises(ValidationError, match="not with `secret`"):
        JWTSettings(algorithm="RS256", secret=secrets.token_urlsafe(48))
    with pytest.raises(ValidationError, match="cannot load"):
        JWTSettings(algorithm="RS256", public_key="not a pem")
