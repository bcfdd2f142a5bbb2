"""Alembic migrations through its API: `upgrade(database)` at start-up, or `python -m crucible_storage.migrate`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

from crucible_storage.config import Settings
from crucible_storage.db import Database

log = logging.getLogger(__name__)

SCRIPT_LOCATION = Path(__file__).with_name("alembic")
# Several storage replicas may start at once against one PostgreSQL: one migrates, the rest wait.
_PG_LOCK_KEY = 0x43_52_55_43  # "CRUC"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    return config


def head() -> str:
    """The newest revision this code knows."""
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if revision is None:
        raise RuntimeError(f"no migrations found in {SCRIPT_LOCATION}")
    return revision


def current(database: Database) -> str | None:
    """The revision the database is at; None for an empty database."""
    with database.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(database: Database, revision: str = "head") -> None:
    """Bring the schema to `revision`; a database already there is left as it is."""
    _migrate(database, command.upgrade, revision)


def downgrade(database: Database, revision: str) -> None:
    """Take the schema back to `revision` (an operator's rollback, run by hand)."""
    _migrate(database, command.downgrade, revision)


def _migrate(database: Database, step: Callable[[Config, str], None], revision: str) -> None:
    """Run `step` to `revision` in one transaction, one migrator at a time."""
    config = alembic_config()
    with (
        database.write_engine.connect() as connection,
        _sqlite_foreign_keys_off(connection),
        connection.begin(),
    ):
        if database.dialect == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        config.attributes["connection"] = connection
        step(config, revision)
        if database.dialect == "sqlite":
            _check_foreign_keys(connection)
    log.info("database schema at %s", revision)


@contextmanager
def _sqlite_foreign_keys_off(connection: Connection) -> Iterator[None]:
    """On SQLite, foreign keys off for the migrations on `connection`.

    Batch mode rebuilds a table by copying it and dropping the original; with foreign keys on,
    dropping `evaluations` would cascade-delete every run, event and comparison. The switch is
    ignored inside a transaction, so it is flipped on the DB-API connection before one begins.
    """
    if connection.dialect.name != "sqlite":
        yield
        return
    _pragma(connection, "PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        _pragma(connection, "PRAGMA foreign_keys=ON")


def _pragma(connection: Connection, statement: str) -> None:
    cursor = connection.connection.cursor()
    try:
        cursor.execute(statement)
    finally:
        cursor.close()


def _check_foreign_keys(connection: Connection) -> None:
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise RuntimeError(f"the migration left rows with dangling foreign keys: {broken[:5]}")


def upgrade_when_reachable(database: Database, *, wait_seconds: float) -> None:
    """`upgrade`, waiting up to `wait_seconds` for a database that does not accept connections
    yet (a PostgreSQL container still starting); the last error is raised after that."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            upgrade(database)
            return
        except OperationalError as exc:
            if time.monotonic() >= deadline:
                raise
            log.warning("database not reachable yet, retrying: %s", exc.orig)
            time.sleep(1)


def main() -> None:
    settings = Settings()
    logging.basicConfig(level=settings.log_level.upper())
    database = Database(settings.database_url)
    try:
        upgrade_when_reachable(database, wait_seconds=settings.startup_wait_seconds)
        print(f"{database.dialect} database at revision {current(database)}")
    finally:
        database.dispose()


if __name__ == "__main__":
    main()
