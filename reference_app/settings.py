"""Settings of the reference app's services, read from the environment.

The variable names are the original system's (``POSTGRES_USER``,
``JWT_ACCESS_SECRET``, ``KAFKA_BROKER``, ``REDIS_HOST``...), so its ``.env``
keeps working; ``DATABASE_URL`` and ``REDIS_URL`` override the pieces. No
settings object is created at import time: each service's ``app_from_env``
makes one, tests build their own.

```python
settings = UserSettings(environment="development", admin_emails="ops@example.com")
settings.database_dsn  # postgresql+asyncpg://postgres@localhost:5432/commercekit
```
"""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Literal
from urllib.parse import quote

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic import model_validator as _model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from commercekit.auth.identity import normalize_identity
from commercekit.auth.tokens import JWTSettings

__all__ = [
    "DemoSettings",
    "EmailSettings",
    "Environment",
    "InventorySettings",
    "PaymentSettings",
    "ServiceSettings",
    "UserSettings",
    "WorkerSettings",
]

Environment = Literal["development", "production"]
"""``development`` relaxes the secret checks and the cookies' Secure flag."""

_ASYNC_DRIVERS = {
    "postgres://": "postgresql+asyncpg://",
    "postgresql://": "postgresql+asyncpg://",
}


class ServiceSettings(BaseSettings):
    """What every service reads: where PostgreSQL, Redis and Kafka are.

    Attributes:
        environment: ``ENVIRONMENT``, ``development`` or ``production`` (the
            default); outside development weak JWT secrets are refused and
            the refresh cookie is Secure.
        log_level: ``LOG_LEVEL``, the level of the JSON logs.
        postgres_user: ``POSTGRES_USER``, the database user.
        postgres_password: ``POSTGRES_PASSWORD``, its password.
        postgres_db: ``POSTGRES_DB``, the database (one, shared by the services).
        postgres_host: ``POSTGRES_HOST``, where PostgreSQL is.
        postgres_port: ``POSTGRES_PORT``, its port.
        database_url: ``DATABASE_URL``, replaces the five ``POSTGRES_*``
            pieces (``postgresql://`` gets the asyncpg driver).
        database_pool_size: ``DATABASE_POOL_SIZE``, the connections a process
            keeps open; a request finding them all busy waits for one rather
            than opening (and closing) another, which costs PostgreSQL a new
            backend process each time.
        redis_host: ``REDIS_HOST``, where Redis is.
        redis_port: ``REDIS_PORT``, its port.
        redis_url: ``REDIS_URL``, replaces ``REDIS_HOST`` and ``REDIS_PORT``.
        kafka_broker: ``KAFKA_BROKER`` (``KAFKA_BOOTSTRAP_SERVERS`` works too),
            the bootstrap servers, comma-separated ``host:port`` pairs.
        kafka_replication_factor: ``KAFKA_REPLICATION_FACTOR``, the replicas of
            each topic the service creates if it is missing (1 on a single
            broker; 3 on a cluster, with ``min.insync.replicas`` 2, so a
            broker can die without losing an acknowledged event).
    """

    model_config = SettingsConfigDict(
        extra="ignore",
        frozen=True,
        populate_by_name=True,
        env_ignore_empty=True,
        hide_input_in_errors=True,  # a refused secret must not reach the logs
    )

    environment: Environment = "production"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    postgres_user: str = "postgres"
    postgres_password: SecretStr = SecretStr("")
    postgres_db: str = "commercekit"
    postgres_host: str = "localhost"
    postgres_port: int = Field(default=5432, gt=0, lt=65536)
    database_url: SecretStr | None = None
    database_pool_size: int = Field(default=10, ge=1, le=500)

    redis_host: str = "localhost"
    redis_port: int = Field(default=6379, gt=0, lt=65536)
    redis_url: SecretStr | None = None

    kafka_broker: str = Field(
        default="localhost:9092",
        validation_alias=AliasChoices("kafka_broker", "KAFKA_BROKER", "KAFKA_BOOTSTRAP_SERVERS"),
    )
    kafka_replication_factor: int = Field(default=1, ge=1, le=32)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("environment", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def development(self) -> bool:
        """Whether this is a development setup."""
        return self.environment == "development"

    @property
    def database_dsn(self) -> str:
        """The SQLAlchemy async URL: ``DATABASE_URL`` (asyncpg driver added), or the pieces."""
        if self.database_url is not None:
            url = self.database_url.get_secret_value()
            for plain, async_ in _ASYNC_DRIVERS.items():
                if url.startswith(plain):
                    return async_ + url[len(plain) :]
            return url
        password = self.postgres_password.get_secret_value()
        auth = quote(self.postgres_user, safe="")
        if password:
            auth += ":" + quote(password, safe="")
        return (
            f"postgresql+asyncpg://{auth}@{self.postgres_host}:{self.postgres_port}/"
            f"{quote(self.postgres_db, safe='')}"
        )

    @property
    def redis_dsn(self) -> str:
        """The Redis URL: ``REDIS_URL``, or ``redis://REDIS_HOST:REDIS_PORT/0``."""
        if self.redis_url is not None:
            return self.redis_url.get_secret_value()
        return f"redis://{self.redis_host}:{self.redis_port}/0"

    @property
    def kafka_bootstrap_servers(self) -> list[str]:
        """``KAFKA_BROKER`` split at commas."""
        return [part.strip() for part in self.kafka_broker.split(",") if part.strip()]


class UserSettings(ServiceSettings):
    """The user service: signs tokens, so it holds the JWT secret.

    Attributes:
        jwt_access_secret: ``JWT_ACCESS_SECRET``, the HS256 secret of access
            tokens. Outside development it is required, at least 32 bytes and
            not a well-known default (commercekit's `JWTSettings` rules);
            ``COMMERCEKIT_JWT_*`` variables tune the rest (algorithm, TTL...).
        admin_emails: ``ADMIN_EMAILS``, comma-separated; users who sign up
            with one of these addresses get the ``admin`` role. Addresses
            are compared as `normalize_identity` keys, as logins and the
            unique index compare them.
        refresh_token_ttl_seconds: ``REFRESH_TOKEN_TTL_SECONDS``, idle lifetime
            of a sign-in session (14 days).
        verify_cache_seconds: ``VERIFY_CACHE_SECONDS``, how long the gateway
            may keep a token's verify answer (never past the token's ``exp``);
            0: every request is checked by the user service.
        password_hash_concurrency: ``PASSWORD_HASH_CONCURRENCY``, password
            checks (login, signup) running at once, on threads of their own;
            unset: one fewer than the CPUs, at least one, so the token check
            always has a core.
        password_hash_queue: ``PASSWORD_HASH_QUEUE``, logins and signups
            that may wait for such a thread; past it they are answered 503
            with ``Retry-After`` at once.
    """

    jwt_access_secret: SecretStr | None = None
    admin_emails: Annotated[frozenset[str], NoDecode] = frozenset()
    refresh_token_ttl_seconds: int = Field(default=14 * 24 * 3600, gt=0)
    verify_cache_seconds: int = Field(default=60, ge=0, le=3600)
    password_hash_concurrency: int | None = Field(default=None, ge=1, le=256)
    password_hash_queue: int = Field(default=16, ge=0, le=10_000)

    @field_validator("admin_emails", mode="before")
    @classmethod
    def _split_emails(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple | set | frozenset):
            keys = (normalize_identity(str(v)) for v in value)
            return frozenset(key for key in keys if key)
        return value

    @_model_validator(mode="after")
    def _check_jwt(self) -> UserSettings:
        _ = self.jwt  # builds (and caches) the JWT settings, refusing weak secrets
        return self

    @cached_property
    def jwt(self) -> JWTSettings:
        """The `JWTSettings` of the access tokens (commercekit's secret policy applies)."""
        values: dict[str, object] = {"environment": self.environment}
        if self.jwt_access_secret is not None:
            values["secret"] = self.jwt_access_secret
        try:
            return JWTSettings(**values)  # type: ignore[arg-type]
        except ValidationError as exc:
            reasons = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
            reasons = reasons.replace("COMMERCEKIT_JWT_SECRET", "JWT_ACCESS_SECRET")
            raise ValueError(f"JWT_ACCESS_SECRET: {reasons}") from None

    def role_for(self, email: str) -> str:
        """``admin`` for an address listed in ``ADMIN_EMAILS``, else ``user``.

        Both sides are `normalize_identity` keys: an address and its Unicode
        twins (U+212A KELVIN SIGN for ``k``, ``É`` for ``é``) are one address,
        as they are one account.
        """
        return "admin" if normalize_identity(email) in self.admin_emails else "user"


class InventorySettings(ServiceSettings):
    """The inventory service.

    Attributes:
        reservation_ttl_seconds: ``RESERVATION_TTL_SECONDS``, how long a hold lasts, in seconds.
        currency: ``CURRENCY``, the ISO code of prices and payments.
        redis_shards: ``REDIS_SHARDS``, how many Redis Cluster slots the
            stock keys are spread over (1 on a single Redis).
        channel_cache_seconds: ``CHANNEL_CACHE_SECONDS``, how long a replica
            keeps the sales channels before reading them again (a change an
            admin makes is seen everywhere within it).
    """

    reservation_ttl_seconds: int = Field(default=900, gt=0)
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    redis_shards: int = Field(default=1, ge=1, le=16384)
    channel_cache_seconds: float = Field(default=5.0, ge=0, le=3600)


class WorkerSettings(InventorySettings):
    """The worker: expiry sweeps, the outbox relay, reconciliation.

    Attributes:
        sweep_interval_seconds: ``SWEEP_INTERVAL_SECONDS``, seconds between expiry sweeps.
        reconcile_interval_seconds: ``RECONCILE_INTERVAL_SECONDS``, seconds between
            comparisons of Redis with the PostgreSQL ledger (repairs drift).
        outbox_poll_seconds: ``OUTBOX_POLL_SECONDS``, how often the relay
            looks for unsent events.
        payment_redrive_after_seconds: ``PAYMENT_REDRIVE_AFTER_SECONDS``, how
            old a payment without an outcome must be before its outcome event
            is sent again (keep it well below ``PAYMENT_HOLD_SECONDS``).
        payment_redrive_interval_seconds: ``PAYMENT_REDRIVE_INTERVAL_SECONDS``,
            how often the worker looks for such payments.
        stock_watch_seconds: ``STOCK_WATCH_SECONDS``, how often the stock
            watch announces the stock journal's new rows (``stock.*`` events).
    """

    sweep_interval_seconds: float = Field(default=10.0, gt=0)
    reconcile_interval_seconds: float = Field(default=60.0, gt=0)
    outbox_poll_seconds: float = Field(default=0.5, gt=0)
    payment_redrive_after_seconds: float = Field(default=120.0, gt=0)
    payment_redrive_interval_seconds: float = Field(default=30.0, gt=0)
    stock_watch_seconds: float = Field(default=1.0, gt=0)


class PaymentSettings(ServiceSettings):
    """The payment service.

    Attributes:
        payment_success_rate: ``PAYMENT_SUCCESS_RATE``, share of simulated
            charges that succeed (0 to 1).
        currency: ``CURRENCY``, the ISO code of prices and payments.
        refund_retry_seconds: ``REFUND_RETRY_SECONDS``, how often refunds
            the processor refused are tried again.
        payment_hold_seconds: ``PAYMENT_HOLD_SECONDS``, how long, at least,
            a reservation stays held from the moment its charge is accepted
            (a payment accepted before the deadline is settled against its
            hold, however late its event arrives within this time).
        redis_shards: ``REDIS_SHARDS``, as the inventory service has it (the
            payment service pins holds in the same Redis).
    """

    payment_success_rate: float = Field(default=0.8, ge=0.0, le=1.0)
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    refund_retry_seconds: float = Field(default=30.0, gt=0)
    payment_hold_seconds: float = Field(default=900.0, gt=0)
    redis_shards: int = Field(default=1, ge=1, le=16384)


class EmailSettings(ServiceSettings):
    """The email service.

    Attributes:
        resend_api_key: ``RESEND_API_KEY``, the Resend key; without it mails
            are printed on standard output. Either way each mail sent is one
            JSON log line (``email sent``) on standard error.
        email_from: ``EMAIL_FROM``, the ``From`` of every mail.
        shop_name: ``SHOP_NAME``, shown in subjects and bodies.
        email_recipient_wait_seconds: ``EMAIL_RECIPIENT_WAIT_SECONDS``, how
            long a payment or refund event waits for its user's
            ``user.created`` (events of two topics come in any order) before
            it is dead-lettered; its partition waits, the others go on.
    """

    resend_api_key: SecretStr | None = None
    email_from: str = "commercekit <onboarding@resend.dev>"
    shop_name: str = "commercekit shop"
    email_recipient_wait_seconds: float = Field(default=300.0, ge=0)


class DemoSettings(UserSettings, WorkerSettings, PaymentSettings, EmailSettings):
    """Everything, for ``commercekit demo`` (one process, embedded backends, development)."""

    environment: Environment = "development"
