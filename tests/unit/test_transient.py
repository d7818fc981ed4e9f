"""`is_transient`: every way a dependency refuses for now, and what is never worth waiting out.

The errors are the real classes of the drivers, wrapped as SQLAlchemy wraps
them (`DBAPIError.instance`, the asyncpg dialect's adapted errors).
"""

from __future__ import annotations

import errno
import socket
import subprocess
import sys
from collections.abc import Callable

import aiokafka.errors as kafka
import asyncpg.exceptions as pg
import pydantic
import pytest
import redis.exceptions as rx
from sqlalchemy import exc as sa
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi

from commercekit.errors import (
    BackendUnavailable,
    EmailRejected,
    InvalidRequest,
    MalformedEvent,
    OutOfStock,
    ProcessorUnavailable,
    PublishError,
    RedisDataLost,
)
from commercekit.transient import TRANSIENT_SQLSTATES, is_transient

_DBAPI = AsyncAdapt_asyncpg_dbapi(__import__("asyncpg"))


def via_sqlalchemy(error: Exception, *, invalidated: bool = False) -> BaseException:
    """`error` as SQLAlchemy's asyncpg dialect raises it: adapted, then wrapped."""
    translate = _DBAPI._asyncpg_error_translate
    adapted_class = next(translate[c] for c in type(error).__mro__ if c in translate)
    adapted = adapted_class(str(error), error)
    adapted.__cause__ = error
    return sa.DBAPIError.instance(
        "SELECT 1", None, adapted, _DBAPI.Error, connection_invalidated=invalidated
    )


def raised_from(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as caught:
            raise outer from caught
    except BaseException as final:
        return final


def raised_while(outer: BaseException, inner: BaseException) -> BaseException:
    """`outer` raised inside ``except inner:`` (an implicit ``__context__``)."""
    try:
        try:
            raise inner
        except BaseException:
            raise outer  # noqa: B904 - the implicit context is the point
    except BaseException as final:
        return final


def validation_error() -> pydantic.ValidationError:
    class Model(pydantic.BaseModel):
        n: int

    try:
        Model.model_validate({"n": "x"})
    except pydantic.ValidationError as exc:
        return exc
    raise AssertionError("validated")


def _errno(code: int) -> OSError:
    return OSError(code, errno.errorcode[code])


TRANSIENT: dict[str, Callable[[], BaseException]] = {
    # commercekit
    "BackendUnavailable": lambda: BackendUnavailable("redis unreachable"),
    "RedisDataLost": lambda: RedisDataLost("flushed"),
    "PublishError": lambda: PublishError("no ack"),
    "ProcessorUnavailable": lambda: ProcessorUnavailable("processor down"),
    # PostgreSQL through SQLAlchemy (asyncpg): plain DBAPIError, neither Operational nor Interface
    "pg 57P03 starting up": lambda: via_sqlalchemy(
        pg.CannotConnectNowError("the database system is starting up")
    ),
    "pg 57P01 admin shutdown": lambda: via_sqlalchemy(
        pg.AdminShutdownError("terminating connection due to administrator command")
    ),
    "pg 57P02 crash shutdown": lambda: via_sqlalchemy(pg.CrashShutdownError("crash")),
    "pg 57P05 idle session timeout": lambda: via_sqlalchemy(pg.IdleSessionTimeoutError("idle")),
    "pg 53300 too many connections": lambda: via_sqlalchemy(
        pg.TooManyConnectionsError("sorry, too many clients already")
    ),
    "pg 53100 disk full": lambda: via_sqlalchemy(pg.DiskFullError("could not extend file")),
    "pg 25006 read only": lambda: via_sqlalchemy(
        pg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction")
    ),
    "pg 40001 serialization failure": lambda: via_sqlalchemy(pg.SerializationError("conflict")),
    "pg 40P01 deadlock": lambda: via_sqlalchemy(pg.DeadlockDetectedError("deadlock detected")),
    "pg 55P03 lock not available": lambda: via_sqlalchemy(pg.LockNotAvailableError("lock")),
    "pg 08006 connection failure": lambda: via_sqlalchemy(pg.ConnectionFailureError("lost")),
    "pg 08003 connection does not exist": lambda: via_sqlalchemy(
        pg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
    ),
    "asyncpg InterfaceError via SQLAlchemy": lambda: via_sqlalchemy(
        pg.InterfaceError("connection is closed")
    ),
    "pg 57P03 raw asyncpg": lambda: pg.CannotConnectNowError("the database system is starting up"),
    "asyncpg InterfaceError raw": lambda: pg.InterfaceError("connection is closed"),
    "SQLAlchemy pool timeout": lambda: sa.TimeoutError("QueuePool limit of size 5 reached"),
    "SQLAlchemy disconnect detected": lambda: sa.DBAPIError(
        "SELECT 1", None, Exception("server closed the connection"), connection_invalidated=True
    ),
    "SQLAlchemy OperationalError without a code": lambda: sa.OperationalError(
        "SELECT 1", None, Exception("database is locked")
    ),
    # the network
    "connection refused": lambda: ConnectionRefusedError(errno.ECONNREFUSED, "refused"),
    "connection reset": lambda: ConnectionResetError(errno.ECONNRESET, "reset by peer"),
    "broken pipe": lambda: BrokenPipeError(errno.EPIPE, "broken pipe"),
    "timeout": TimeoutError,
    "name not resolved": lambda: socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
    "host unreachable errno": lambda: _errno(errno.EHOSTUNREACH),
    "asyncio: every address refused": lambda: OSError(
        "Multiple exceptions: [Errno 111] Connect call failed ('127.0.0.1', 5432), "
        "[Errno 99] Cannot assign requested address"
    ),
    # Redis
    "redis LOADING": lambda: rx.BusyLoadingError("Redis is loading the dataset in memory"),
    "redis READONLY": lambda: rx.ReadOnlyError("You can't write against a read only replica."),
    "redis MASTERDOWN": lambda: rx.MasterDownError("Link with MASTER is down"),
    "redis CLUSTERDOWN": lambda: rx.ClusterDownError("The cluster is down"),
    "redis TRYAGAIN": lambda: rx.TryAgainError("Multiple keys request during rehashing of slot"),
    "redis MOVED": lambda: rx.MovedError("3999 127.0.0.1:6381"),
    "redis ASK": lambda: rx.AskError("3999 127.0.0.1:6381"),
    "redis redirect limit (MOVED/ASK storm)": lambda: rx.ClusterError("TTL exhausted."),
    "redis slot not covered": lambda: rx.SlotNotCoveredError("slot 42 not covered"),
    "redis connection": lambda: rx.ConnectionError("Error 111 connecting to 127.0.0.1:6379."),
    "redis timeout": lambda: rx.TimeoutError("Timeout reading from socket"),
    "redis pool exhausted": lambda: rx.MaxConnectionsError("Too many connections"),
    "redis NOREPLICAS reply": lambda: rx.ResponseError("NOREPLICAS Not enough good replicas"),
    "redis MISCONF reply": lambda: rx.ResponseError("MISCONF Redis is configured to save RDB"),
    "redis OOM": lambda: rx.OutOfMemoryError("command not allowed when used memory > maxmemory"),
    "redis BUSY reply": lambda: rx.ResponseError("BUSY Redis is busy running a script."),
    # Kafka
    "kafka not leader": kafka.NotLeaderForPartitionError,
    "kafka not enough replicas": kafka.NotEnoughReplicasError,
    "kafka not enough replicas after append": kafka.NotEnoughReplicasAfterAppendError,
    "kafka request timed out": kafka.RequestTimedOutError,
    "kafka connection": lambda: kafka.KafkaConnectionError("no connection to node 1"),
    "kafka leader not available": kafka.LeaderNotAvailableError,
    "kafka client timeout": kafka.KafkaTimeoutError,
    "kafka no brokers": kafka.NoBrokersAvailable,
    # chains
    "raised from a transient error": lambda: raised_from(
        RuntimeError("settling failed"), rx.ConnectionError("down")
    ),
    "raised while handling one": lambda: raised_while(
        RuntimeError("settling failed"), pg.CannotConnectNowError("starting up")
    ),
    "a group of transient errors": lambda: ExceptionGroup(
        "both down", [rx.TimeoutError("t"), ConnectionResetError(errno.ECONNRESET, "reset")]
    ),
    "commercekit wrapping a driver error": lambda: raised_from(
        BackendUnavailable("ledger unavailable"), ValueError("whatever")
    ),
}

NOT_TRANSIENT: dict[str, Callable[[], BaseException]] = {
    "ValueError": lambda: ValueError("bad"),
    "pydantic ValidationError": validation_error,
    "KeyError": lambda: KeyError("k"),
    "RuntimeError": lambda: RuntimeError("a bug"),
    "IntegrityError 23505 unique violation": lambda: via_sqlalchemy(
        pg.UniqueViolationError("duplicate key value violates unique constraint")
    ),
    "IntegrityError without a code": lambda: sa.IntegrityError(
        "INSERT", None, Exception("UNIQUE constraint failed")
    ),
    "pg 42P01 undefined table": lambda: via_sqlalchemy(pg.UndefinedTableError("no such table")),
    "pg 57014 statement canceled": lambda: via_sqlalchemy(pg.QueryCanceledError("timeout")),
    "pg 57P04 database dropped": lambda: via_sqlalchemy(pg.DatabaseDroppedError("dropped")),
    "pg 22P02 invalid text": lambda: via_sqlalchemy(pg.InvalidTextRepresentationError("bad")),
    "pg 40002 deferred constraint at commit": lambda: via_sqlalchemy(
        pg.TransactionIntegrityConstraintViolationError("deferred constraint")
    ),
    "pg 22000 data exception": lambda: pg.DataError("invalid input for query argument"),
    "an OperationalError whose code is permanent": lambda: sa.OperationalError(
        "SELECT 1", None, _with_pgcode("57014")
    ),
    "SQLAlchemy ArgumentError": lambda: sa.ArgumentError("bad argument"),
    "file not found": lambda: FileNotFoundError(errno.ENOENT, "no such file"),
    "permission denied": lambda: PermissionError(errno.EACCES, "denied"),
    "redis wrong password": lambda: rx.AuthenticationError("invalid username-password pair"),
    "redis NOPERM": lambda: rx.NoPermissionError("this user has no permissions"),
    "redis wrong type": lambda: rx.ResponseError("WRONGTYPE Operation against a key"),
    "redis script error": lambda: rx.ResponseError("ERR Error running script"),
    "redis NOSCRIPT": lambda: rx.NoScriptError("No matching script"),
    "kafka message too large": kafka.MessageSizeTooLargeError,
    "kafka topic authorization": kafka.TopicAuthorizationFailedError,
    "kafka bad configuration": lambda: kafka.KafkaConfigurationError("bad"),
    "commercekit OutOfStock": lambda: OutOfStock(()),
    "commercekit InvalidRequest": lambda: InvalidRequest("zero quantity"),
    "commercekit MalformedEvent": lambda: MalformedEvent("not JSON"),
    "a permanent commercekit error raised from a transient one": lambda: raised_from(
        EmailRejected("refused", status=422), ConnectionResetError(errno.ECONNRESET, "reset")
    ),
    "an input error raised while handling an outage": lambda: raised_while(
        ValueError("bad amount"), rx.ConnectionError("down")
    ),
    "the context suppressed": lambda: raised_from_none(RuntimeError("bug")),
    "a group with one permanent error": lambda: ExceptionGroup(
        "mixed", [rx.TimeoutError("t"), ValueError("bad")]
    ),
    "a group of a KeyboardInterrupt": lambda: BaseExceptionGroup("one", [KeyboardInterrupt()]),
}


def _with_pgcode(code: str) -> Exception:
    error = Exception("psycopg2-style")
    error.pgcode = code  # type: ignore[attr-defined]
    return error


def raised_from_none(outer: BaseException) -> BaseException:
    try:
        try:
            raise rx.ConnectionError("down")
        except rx.ConnectionError:
            raise outer from None
    except BaseException as final:
        return final


@pytest.mark.parametrize("case", sorted(TRANSIENT))
def test_is_transient(case: str) -> None:
    assert is_transient(TRANSIENT[case]()) is True


@pytest.mark.parametrize("case", sorted(NOT_TRANSIENT))
def test_is_not_transient(case: str) -> None:
    assert is_transient(NOT_TRANSIENT[case]()) is False


def test_the_57p03_wrapper_is_neither_operational_nor_interface_error() -> None:
    # Why a class-based list missed it: SQLAlchemy's asyncpg dialect gives a plain DBAPIError.
    error = via_sqlalchemy(pg.CannotConnectNowError("the database system is starting up"))
    assert type(error) is sa.DBAPIError
    assert not isinstance(error, sa.OperationalError | sa.InterfaceError)
    assert is_transient(error)


def test_every_sqlstate_named_is_a_real_postgresql_code() -> None:
    known = {
        cls.sqlstate for cls in vars(pg).values() if isinstance(getattr(cls, "sqlstate", None), str)
    }
    assert known >= TRANSIENT_SQLSTATES


def test_a_cyclic_chain_ends() -> None:
    first, second = RuntimeError("a"), RuntimeError("b")
    first.__context__, second.__context__ = second, first
    assert is_transient(first) is False


def test_the_drivers_are_not_imported_by_the_classification() -> None:
    code = (
        "import sys, commercekit.transient as t; "
        "t.is_transient(ConnectionResetError()); t.is_transient(ValueError()); "
        "drivers = ('redis', 'sqlalchemy', 'asyncpg', 'aiokafka'); "
        "print(sorted(m for m in drivers if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
