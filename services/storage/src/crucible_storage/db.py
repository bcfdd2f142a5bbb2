"""Database engine and sessions: SQLite in WAL mode by default, PostgreSQL (psycopg 3) when asked.

SQLite allows one writer at a time. A transaction that reads and then writes would have to upgrade
its lock mid-way, and in WAL mode that fails at once (busy_timeout does not help) if another writer
committed meanwhile; so every *write* session starts with `BEGIN IMMEDIATE` and waits its turn up
front, while read sessions use a plain `BEGIN` and never block.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from crucible_contracts.errors import Unavailable

_WRITE_OPTION = "crucible_write"
# SQLite: no BEGIN at all (pysqlite runs with isolation_level None, so each statement commits on
# its own): for reads of one statement, which are consistent by themselves.
_AUTOCOMMIT_OPTION = "crucible_autocommit"


def normalize_url(raw: str) -> URL:
    """Parse DATABASE_URL; `postgresql://` and `postgres://` are rewritten to the psycopg 3 driver."""
    url = make_url(raw)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise ValueError(f"DATABASE_URL must be sqlite or postgresql, not {url.drivername!r}")
    return url


def _sqlite_in_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:")


def _make_sqlite_folder(url: URL) -> None:
    if _sqlite_in_memory(url) or str(url.database).startswith("file:"):
        return
    Path(str(url.database)).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _sqlite_engine(url: URL, *, busy_timeout_ms: int) -> Engine:
    _make_sqlite_folder(url)
    extra: dict[str, Any] = {}
    if _sqlite_in_memory(url):
        extra["poolclass"] = StaticPool
    engine = create_engine(url, connect_args={"check_same_thread": False}, **extra)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN itself, instead of pysqlite's own
        # deferred BEGIN, so that writers can ask for IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        options = connection.get_execution_options()
        if options.get(_AUTOCOMMIT_OPTION, False):
            return
        connection.exec_driver_sql("BEGIN IMMEDIATE" if options.get(_WRITE_OPTION) else "BEGIN")

    return engine


def _postgres_engine(url: URL, *, pool_size: int, max_overflow: int) -> Engine:
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=max_overflow,
        connect_args={"connect_timeout": 5, "application_name": "crucible-storage"},
    )


class Database:
    """One engine and its session factories. Sessions do not expire objects on commit."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        max_overflow: int = 20,
        busy_timeout_ms: int = 5000,
        inline: bool | None = None,
    ) -> None:
        self.url = normalize_url(url)
        self.dialect = self.url.get_backend_name()
        # Whether the async routes call the database on the event loop (`deps.in_connection`);
        # by default on SQLite only, whose calls never wait on the network.
        self.inline = self.dialect == "sqlite" if inline is None else inline
        if self.dialect == "sqlite":
            self.engine = _sqlite_engine(self.url, busy_timeout_ms=busy_timeout_ms)
        else:
            self.engine = _postgres_engine(self.url, pool_size=pool_size, max_overflow=max_overflow)
        # Shares the engine's pool; only the way transactions begin differs (see module docstring).
        self.write_engine = self.engine.execution_options(**{_WRITE_OPTION: True})
        # For reads of a single statement: no transaction to begin and end (two statements on
        # SQLite, two round trips on PostgreSQL).
        if self.dialect == "sqlite":
            self.autocommit_engine = self.engine.execution_options(**{_AUTOCOMMIT_OPTION: True})
        else:
            self.autocommit_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._reader = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = sessionmaker(self.write_engine, expire_on_commit=False)

    def reader(self) -> Session:
        """A session for reads only."""
        return self._reader()

    def writer(self) -> Session:
        """A session that may write; on SQLite it holds the write lock from its first statement."""
        return self._writer()

    def ping(self) -> None:
        """Raise Unavailable unless the database answers a trivial query."""
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise Unavailable(
                f"the {self.dialect} database cannot be reached", database=self.dialect
            ) from exc

    def dispose(self) -> None:
        self.engine.dispose()
