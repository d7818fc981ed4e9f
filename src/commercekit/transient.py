"""One answer to "is this failure worth waiting out?": `is_transient`.

```python
from commercekit.transient import is_transient

try:
    await settle(event)
except Exception as exc:
    if is_transient(exc):
        ...  # a dependency refused for now: retry later, answer 503
    raise
```

An error is *transient* when a dependency refused the call for now, not
because of what was asked: the same call, made again once the dependency is
back, can succeed. Consumers wait such errors out instead of dead-lettering
the event (`commercekit.events.EventRetry` uses this function by default),
and the reference app answers them with a 503 and ``Retry-After``.

What counts, per dependency:

- **commercekit**: `BackendUnavailable` and its subclasses (`RedisDataLost`,
  `NotReplicated`, `UnsupportedRecordVersion`, `PublishError`,
  `ProcessorUnavailable`).
- **PostgreSQL**, by SQLSTATE, read from asyncpg's ``sqlstate``, psycopg's
  ``sqlstate`` / ``pgcode`` or SQLAlchemy's wrapper, wherever it sits in the
  chain: every connection exception (class ``08``), every lack of resources
  (class ``53``: too many connections 53300, out of memory, disk full), the
  server starting up (57P03, "cannot connect now"), shutting down (57P01
  admin, 57P02 crash), an idle session closed (57P05), a read-only database
  (25006: a primary demoted during a failover), and the transaction
  conflicts PostgreSQL asks you to retry: serialization failure (40001),
  deadlock (40P01), lock not available (55P03).
- **SQLAlchemy**: a pool timeout, a disconnect it detected
  (``connection_invalidated``), and `OperationalError` / `InterfaceError`
  carrying no SQLSTATE (the DB-API classes of lost connections; SQLite's
  "database is locked"). asyncpg's `InterfaceError` (the connection closed
  under the call: ``ConnectionDoesNotExistError``...).
- **The network**: `ConnectionError` (refused, reset, aborted, broken pipe),
  `TimeoutError`, a name that does not resolve (`socket.gaierror`), an
  `OSError` with a network errno, and the errno-less `OSError` asyncio
  raises when every address of a host refused.
- **Redis** (redis-py): `ConnectionError` (LOADING is its `BusyLoadingError`;
  a full pool its `MaxConnectionsError`) but not a refused password,
  `TimeoutError`, READONLY, MASTERDOWN, CLUSTERDOWN, TRYAGAIN, MOVED and ASK
  (a resharding or failover in progress), a cluster's redirect limit reached
  or slot not covered, and replies starting with LOADING, BUSY, NOREPLICAS,
  MISCONF or OOM (the server refuses writes until it recovers).
- **Kafka** (aiokafka): every error whose ``retriable`` attribute is true
  (not leader, not enough replicas, request timed out, leader not available,
  no connection...), plus a client-side timeout and an unavailable broker.
- An `ExceptionGroup` whose every member is transient.

What never counts, whatever it was raised from: any other `CommerceKitError`
(the library already decided: `OutOfStock`, `MalformedEvent`...), an error
whose SQLSTATE is not in the list above (a unique violation 23505, a
canceled statement 57014, a dropped database 57P04, a syntax error), and an
error that says the input or the code is wrong (`ValueError`, so pydantic's
``ValidationError`` too, `TypeError`, `LookupError`, `AttributeError`...).

The decision walks the chain from the error outwards in: ``.orig`` (what
SQLAlchemy wrapped), ``__cause__`` (``raise ... from``), and
``__context__`` unless it was suppressed (``from None``). The first link
that is decisive (a commercekit error, a SQLSTATE, an input error) decides;
otherwise any transient link makes the whole error transient.

Why the transaction conflicts count: 40001 and 40P01 are PostgreSQL's way
of saying "run this transaction again"; a consumer that retries the handler
does exactly that, and an HTTP client told 503 with ``Retry-After`` too.
A canceled statement (57014) does not count: a statement timeout that a
query always hits would be retried forever.

The optional drivers are looked up lazily: nothing here imports redis,
SQLAlchemy, asyncpg or aiokafka, and an error of a driver that is not
installed simply cannot occur.
"""

from __future__ import annotations

import errno
import socket
import sys
from collections.abc import Iterator

from commercekit.errors import BackendUnavailable, CommerceKitError

__all__ = ["TRANSIENT_SQLSTATES", "is_transient"]

TRANSIENT_SQLSTATES: frozenset[str] = frozenset(
    {
        "25006",  # read_only_sql_transaction: the database is (now) a read-only replica
        "40001",  # serialization_failure: run the transaction again
        "40P01",  # deadlock_detected: run the transaction again
        "55P03",  # lock_not_available: lock_timeout or NOWAIT
        "57P01",  # admin_shutdown: the server is shutting down, or the backend was terminated
        "57P02",  # crash_shutdown: another backend crashed, the server restarts
        "57P03",  # cannot_connect_now: starting up, or a standby not accepting connections
        "57P05",  # idle_session_timeout: the server closed an idle session
    }
)
"""The SQLSTATEs that are transient, besides every code of classes 08 and 53."""

_TRANSIENT_SQLSTATE_CLASSES = ("08", "53")  # connection exception, insufficient resources

_NETWORK_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EPIPE,
        errno.ETIMEDOUT,
        errno.EHOSTUNREACH,
        errno.EHOSTDOWN,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.ENETRESET,
        errno.EADDRNOTAVAIL,
        errno.ENOTCONN,
        errno.ESHUTDOWN,
    }
)

_INPUT_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    LookupError,
    AttributeError,
    ArithmeticError,
    AssertionError,
    NotImplementedError,
)
"""Errors that say the input or the code is wrong: retrying the same call cannot help."""

_REDIS_REFUSALS = (
    "LOADING",
    "READONLY",
    "MASTERDOWN",
    "CLUSTERDOWN",
    "TRYAGAIN",
    "MOVED",
    "ASK",
    "BUSY",
    "NOREPLICAS",
    "MISCONF",
    "OOM",
)
"""Redis error replies (their first word) that mean "not now" rather than "not this"."""

_KAFKA_ALSO_TRANSIENT = frozenset(
    {"KafkaTimeoutError", "KafkaUnavailableError", "BrokerNotAvailableError"}
)
"""aiokafka errors marked not ``retriable`` that still mean the brokers are away for now."""


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` means a dependency refused for now, so the same call may succeed later.

    See the module for every case. Never raises.

    Args:
        exc: any exception, as caught (a SQLAlchemy wrapper, a driver's error,
            an error raised from either).
    """
    if isinstance(exc, BaseExceptionGroup):
        members = exc.exceptions
        return bool(members) and all(is_transient(member) for member in members)
    chain = list(_chain(exc))
    for link in chain:
        verdict = _decisive(link)
        if verdict is not None:
            return verdict
    return any(_refusal(link) for link in chain)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then what it wraps (``.orig``), its cause or unsuppressed context, and so on."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        link = pending.pop(0)
        if id(link) in seen:
            continue
        seen.add(id(link))
        yield link
        orig = getattr(link, "orig", None)
        if isinstance(orig, BaseException):
            pending.append(orig)
        if link.__cause__ is not None:
            pending.append(link.__cause__)
        elif link.__context__ is not None and not link.__suppress_context__:
            pending.append(link.__context__)


def _decisive(exc: BaseException) -> bool | None:
    """A verdict that ends the walk, or None if this link leaves it open."""
    if isinstance(exc, BackendUnavailable):
        return True
    if isinstance(exc, CommerceKitError):
        return False
    code = _sqlstate(exc)
    if code is not None:
        return code in TRANSIENT_SQLSTATES or code.startswith(_TRANSIENT_SQLSTATE_CLASSES)
    if isinstance(exc, _INPUT_ERRORS):
        return False
    return None


def _sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a PostgreSQL error (asyncpg, psycopg, psycopg2, SQLAlchemy's adapter)."""
    for attribute in ("sqlstate", "pgcode"):
        code = getattr(exc, attribute, None)
        if isinstance(code, str) and len(code) == 5:
            return code
    return None


def _refusal(exc: BaseException) -> bool:
    """Whether this one link, on its own, is a dependency refusing."""
    if isinstance(exc, OSError):
        return _network_error(exc)
    module = type(exc).__module__
    if module.startswith("sqlalchemy"):
        return _sqlalchemy_refusal(exc)
    if module.startswith("redis"):
        return _redis_refusal(exc)
    if module.startswith("aiokafka"):
        return _kafka_refusal(exc)
    if module.startswith("asyncpg"):
        return _asyncpg_refusal(exc)
    return False


def _network_error(exc: OSError) -> bool:
    if isinstance(exc, ConnectionError | TimeoutError | socket.gaierror | socket.herror):
        return True
    if exc.errno in _NETWORK_ERRNOS:
        return True
    # asyncio's create_connection, every address refused: "Multiple exceptions: ..."
    return type(exc) is OSError and exc.errno is None


def _sqlalchemy_refusal(exc: BaseException) -> bool:
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is None:
        return False
    if isinstance(exc, sa_exc.TimeoutError | sa_exc.DisconnectionError):
        return True  # the pool had no connection to give in time; a disconnect detected
    if isinstance(exc, sa_exc.DBAPIError):
        return bool(exc.connection_invalidated) or isinstance(
            exc, sa_exc.OperationalError | sa_exc.InterfaceError
        )
    return False


def _redis_refusal(exc: BaseException) -> bool:
    redis_exc = sys.modules.get("redis.exceptions")
    if redis_exc is None:
        return False
    refused_credentials = (
        redis_exc.AuthenticationError,
        redis_exc.AuthorizationError,
        getattr(redis_exc, "ExternalAuthProviderError", redis_exc.AuthenticationError),
    )
    if isinstance(exc, refused_credentials):
        return False  # a ConnectionError in redis-py, but a wrong password stays wrong
    transient = (
        redis_exc.ConnectionError,  # BusyLoadingError (LOADING), MaxConnectionsError
        redis_exc.TimeoutError,
        redis_exc.ReadOnlyError,
        redis_exc.ClusterError,  # ClusterDownError, MasterDownError, "TTL exhausted"
        redis_exc.TryAgainError,
        redis_exc.AskError,  # MovedError too
        redis_exc.SlotNotCoveredError,
        redis_exc.OutOfMemoryError,  # OOM: writes refused until memory is freed
    )
    if isinstance(exc, transient):
        return True
    if isinstance(exc, redis_exc.ResponseError) and exc.args:
        first = str(exc.args[0]).split(" ", 1)[0].upper()
        return first in _REDIS_REFUSALS
    return False


def _kafka_refusal(exc: BaseException) -> bool:
    if getattr(exc, "retriable", False) is True:
        return True
    return type(exc).__name__ in _KAFKA_ALSO_TRANSIENT


def _asyncpg_refusal(exc: BaseException) -> bool:
    asyncpg_exc = sys.modules.get("asyncpg.exceptions")
    if asyncpg_exc is None:
        return False
    # The connection closed under the call (ConnectionDoesNotExistError is a
    # PostgresConnectionError, class 08, and decided by its SQLSTATE already).
    return isinstance(exc, asyncpg_exc.InterfaceError)
