"""Database engines, transactions and schema migrations.

One :class:`~sqlalchemy.ext.asyncio.AsyncEngine` per process. SQLite (the
embedded default) runs in WAL mode with full fsync, foreign keys on, and
write transactions opened with ``BEGIN IMMEDIATE`` so that two writers never
deadlock on a lock upgrade. PostgreSQL runs through asyncpg.

Where the registry and the resolver read and write (the transactions
and :func:`read_with`), a database that fails is one exception,
:class:`~registry.errors.StorageUnavailable`, for the front ends to answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import (
    ArgumentError,
    DataError,
    DBAPIError,
    IntegrityError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from .errors import StorageUnavailable

_WRITE_OPTION = "idnode_write"
log = logging.getLogger("idnode.db")
T = TypeVar("T")

_FAILURES = (DBAPIError, PoolTimeout, OSError)
"""What SQLAlchemy, its pool and the drivers raise when the database cannot be
used (a timeout, a refused or reset connection are OSErrors too)."""
_REFUSALS = (IntegrityError, DataError)
"""The database's verdict on the data, not an outage: the registry answers them
itself (a conflicting write, a refused value)."""


class _Storage:
    """``with _STORAGE:`` a failure of the database inside leaves as
    :class:`StorageUnavailable`, the original as its cause; refusals of the
    data pass as they are. A class, not a generator: it is on every uncached
    lookup, and costs a fraction of a generator's entry and exit."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, traceback: object) -> None:
        if isinstance(exc, _FAILURES) and not isinstance(exc, _REFUSALS):
            raise StorageUnavailable(_reason(exc)) from exc


_STORAGE = _Storage()


class DatabaseError(RuntimeError):
    """The database cannot be used: unreachable, or its schema is not ours."""


class SchemaOutOfDate(DatabaseError):
    pass


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def missing_sqlite_file(url: str) -> str | None:
    """The file of a SQLite URL when it does not exist (connecting would create
    it empty), else None."""
    if not is_sqlite(url):
        return None
    try:
        name = make_url(url).database
    except ArgumentError:
        return None  # create_engine says what is wrong with it
    if not name or name == ":memory:" or Path(name).exists():
        return None
    return name


def create_engine(url: str, *, pool_size: int = 10, max_overflow: int | None = None) -> AsyncEngine:
    """The registry's engine for writes and administration: PostgreSQL pools
    ``pool_size`` connections, and opens up to ``max_overflow`` (default: as
    many again) more under load."""
    if is_sqlite(url):
        engine = create_async_engine(url, connect_args={"timeout": 30})
        _configure_sqlite(engine)
        return engine
    overflow = pool_size if max_overflow is None else max_overflow
    return create_async_engine(url, pool_size=pool_size, max_overflow=overflow, pool_pre_ping=True)


class Reads(Protocol):
    """What the resolution hot path reads through."""

    def connect(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]: ...

    async def dispose(self) -> None: ...


def create_read_engine(url: str, *, replica_url: str = "", pool_size: int = 24) -> Reads:
    """Reads for the resolution hot path: autocommit single statements.

    PostgreSQL: an asyncpg pool in autocommit, so a lookup is one round trip,
    not BEGIN + SELECT + ROLLBACK. SQLite: the lookup runs on the event loop
    itself (:class:`InlineSqliteReads`) — an indexed read of a local file
    takes microseconds, less than handing it to a driver thread and back.
    """
    if is_sqlite(url):
        return InlineSqliteReads(url)
    if replica_url:
        return ReplicaReads(replica_url, create_read_engine(url, pool_size=pool_size))
    # No pre-ping here: it would double the round trips of every lookup. A
    # connection found dead fails one request and is replaced by the pool.
    # A fixed pool, no overflow: under a burst, lookups queue for a connection
    # instead of opening and closing extra ones (a TLS handshake each).
    return create_async_engine(
        url, pool_size=pool_size, max_overflow=0, isolation_level="AUTOCOMMIT"
    )


REPLICA_RETRY_SECONDS = 5.0
"""After the replica failed, reads go to the primary this long before it is tried again."""
REPLICA_CATCH_UP_SECONDS = 1.0
"""How long a change waits for the replica to replay it before reads of it go to the primary."""


_REPLAYED_SINCE = text("SELECT pg_last_wal_replay_lsn() >= CAST(CAST(:at AS text) AS pg_lsn)")
"""Whether the replica has replayed the primary's WAL up to a position (asyncpg
reads LSNs as integers; the text form compares as PostgreSQL means it)."""


class ReplicaReads:
    """Reads from a streaming replica of the primary, the primary standing in
    while the replica is down or behind.

    A replica lags its primary by a little. So that no stale answer outlives a
    change, :meth:`catch_up` runs before the change feed evicts answers: it
    waits (bounded) until the replica has replayed the primary's WAL as of now;
    if the replica does not get there in time, reads go to the primary until it
    does. A read that fails on the replica is retried on the primary.
    """

    def __init__(self, replica_url: str, primary: Reads, *, pool_size: int = 24) -> None:
        self.replica_url = replica_url
        self.primary = primary
        self.pool_size = pool_size
        self.replica: AsyncEngine = self._engine()
        self._avoid_until = 0.0
        self._behind = False

    def _engine(self) -> AsyncEngine:
        return create_async_engine(
            self.replica_url,
            pool_size=self.pool_size,
            max_overflow=0,
            isolation_level="AUTOCOMMIT",
            connect_args={"timeout": 2},
        )

    @property
    def using_replica(self) -> bool:
        return not self._behind and time.monotonic() >= self._avoid_until

    async def run(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """``work`` on a read connection: the replica's when it is usable, else
        (or if it fails there) the primary's."""
        if self.using_replica:
            try:
                async with self.replica.connect() as conn:
                    return await work(conn)
            except _FAILURES as exc:
                await self._replica_failed(exc)
        async with self.primary.connect() as conn:
            return await work(conn)

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A connection to read through (no retry: prefer :meth:`run`)."""
        engine = self.replica if self.using_replica else self.primary
        async with engine.connect() as conn:
            yield conn

    async def _replica_failed(self, exc: BaseException) -> None:
        if time.monotonic() >= self._avoid_until:
            log.warning("read replica unavailable (%s): reading from the primary", _reason(exc))
        self._avoid_until = time.monotonic() + REPLICA_RETRY_SECONDS
        # Its pooled connections are likely dead too: start afresh next time.
        old, self.replica = self.replica, self._engine()
        with contextlib.suppress(Exception):
            await old.dispose()

    async def catch_up(self, primary: AsyncEngine) -> None:
        """Return once the replica has what the primary has committed so far, or
        after REPLICA_CATCH_UP_SECONDS with reads turned to the primary until it has."""
        if time.monotonic() < self._avoid_until:
            return  # reads go to the primary anyway; no waiting on a replica that is away
        try:
            async with primary.connect() as conn:
                position = (await conn.execute(text("SELECT pg_current_wal_lsn()::text"))).scalar()
            deadline = time.monotonic() + REPLICA_CATCH_UP_SECONDS
            async with self.replica.connect() as conn:
                while True:
                    replayed = (
                        await conn.execute(
                            _REPLAYED_SINCE,
                            {"at": position},
                        )
                    ).scalar()
                    if replayed:
                        if self._behind:
                            log.info("read replica caught up: reading from it again")
                        self._behind = False
                        return
                    if time.monotonic() >= deadline:
                        break
                    await asyncio.sleep(0.01)
        except _FAILURES as exc:
            await self._replica_failed(exc)
            return
        if not self._behind:
            log.warning(
                "read replica more than %gs behind: reading from the primary",
                REPLICA_CATCH_UP_SECONDS,
            )
        self._behind = True

    async def dispose(self) -> None:
        await self.replica.dispose()
        await self.primary.dispose()


async def read_with(
    reads: Reads | AsyncEngine, work: Callable[[AsyncConnection], Awaitable[T]]
) -> T:
    """``work`` on a read connection of ``reads`` (retried on the primary where
    ``reads`` is a replica); :class:`StorageUnavailable` when it cannot be done."""
    with _STORAGE:  # outside the replica's retry, which tells its failures apart itself
        if isinstance(reads, ReplicaReads):
            return await reads.run(work)
        async with reads.connect() as conn:
            return await work(conn)


class _InlineConnection:
    """The part of :class:`AsyncConnection` the store's readers use, done inline."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.dialect = conn.dialect

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        return self._conn.execute(statement, parameters)


class InlineSqliteReads:
    """Read-only SQLite access on the event loop, for point lookups only."""

    def __init__(self, url: str) -> None:
        sync_url = make_url(url).set(drivername="sqlite")
        self._engine = sa_create_engine(
            sync_url, poolclass=StaticPool, connect_args={"check_same_thread": False}
        )

        @event.listens_for(self._engine, "connect")
        def _on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA query_only=ON")
            cursor.execute("PRAGMA busy_timeout=1000")
            cursor.close()

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        with self._engine.connect() as conn:
            yield cast(AsyncConnection, _InlineConnection(conn))

    async def dispose(self) -> None:
        self._engine.dispose()


def _configure_sqlite(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # Take BEGIN out of the driver's hands so that the "begin" hook below
        # decides between a deferred and an immediate transaction.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=FULL",
            "PRAGMA foreign_keys=ON",
            "PRAGMA busy_timeout=30000",
        ):
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextlib.asynccontextmanager
async def write_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A transaction that will write: committed on exit, rolled back on error;
    :class:`StorageUnavailable` when the database fails in it."""
    with _STORAGE:
        async with engine.connect() as conn:
            conn = await conn.execution_options(**{_WRITE_OPTION: True})
            async with conn.begin():
                yield conn


@contextlib.asynccontextmanager
async def read_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A transaction that reads; :class:`StorageUnavailable` when the database fails in it."""
    with _STORAGE:
        async with engine.connect() as conn, conn.begin():
            yield conn


# --- migrations -------------------------------------------------------------


def alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    """Apply Alembic migrations up to ``revision`` on this engine."""
    cfg = alembic_config()

    def run(connection: Connection) -> None:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)

    try:
        async with engine.connect() as conn:
            conn = await conn.execution_options(**{_WRITE_OPTION: True})
            async with conn.begin():
                await conn.run_sync(run)
    except (OSError, DBAPIError) as exc:
        raise DatabaseError(f"cannot migrate the database: {_reason(exc)}") from None


def revision_of(connection: Connection) -> str | None:
    """The schema revision Alembic recorded in the database (``run_sync`` it)."""
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(engine: AsyncEngine) -> str | None:
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(revision_of)
    except (OSError, DBAPIError) as exc:
        raise DatabaseError(f"database unreachable: {_reason(exc)}") from None


async def check_schema(engine: AsyncEngine) -> None:
    """Refuse to run against a database whose schema is not at our head (or a
    SQLite file that is not there, which asking would create empty)."""
    missing = missing_sqlite_file(engine.url.render_as_string(hide_password=False))
    if missing is not None:
        raise SchemaOutOfDate(f"no database at {missing}; create it with `idnode migrate`")
    current = await current_revision(engine)
    head = head_revision()
    if current == head:
        return
    if current is None:
        raise SchemaOutOfDate("database has no idnode schema; run `idnode migrate`")
    script = ScriptDirectory.from_config(alembic_config())
    known = {rev.revision for rev in script.walk_revisions()}
    if current in known:
        raise SchemaOutOfDate(
            f"database schema {current} is older than {head}; run `idnode migrate`"
        )
    raise SchemaOutOfDate(
        f"database schema {current} is unknown to this idnode (newer release?); refusing to run"
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OperationalError | DBAPIError) and exc.orig is not None:
        return str(exc.orig).strip().splitlines()[0]
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def describe_error(exc: BaseException) -> str:
    """One line for an operator, without a stack trace."""
    return _reason(exc)


def url_for_log(url: str) -> str:
    """The URL without its password."""
    return make_url(url).render_as_string(hide_password=True)
