"""Alembic migrations: an empty database is brought to head, again and again, and matches the ORM."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import OperationalError

from crucible_contracts.errors import Unavailable
from crucible_runtime.pytest_plugin import free_port
from crucible_storage import migrate
from crucible_storage.db import Database, normalize_url
from crucible_storage.tables import Base

TABLES = {
    "alembic_version",
    "evaluations",
    "runs",
    "events",
    "comparisons",
    "audit",
    "tenants",
    "api_keys",
}


def test_migrations_build_an_empty_database_and_are_idempotent(database_url) -> None:
    database = Database(database_url)
    try:
        assert migrate.current(database) is None

        migrate.upgrade(database)
        migrate.upgrade(database)

        assert migrate.current(database) == migrate.head()
        assert set(inspect(database.engine).get_table_names()) == TABLES
        with database.engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert diff == []
    finally:
        database.dispose()


def test_0003_gives_existing_runs_no_replays_and_their_creation_as_queued_at(database_url) -> None:
    database = Database(database_url)
    created = "2030-01-02 03:04:05"
    try:
        migrate.upgrade(database, "0002_stats_indexes")
        with database.write_engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO evaluations (eval_id, code, language, timeout, priority, created_at)"
                    " VALUES ('e1', 'print(1)', 'python', 5, false, :at)"
                ),
                {"at": created},
            )
            connection.execute(
                text(
                    "INSERT INTO runs (eval_id, role, backend, status, attempts, output_truncated,"
                    " error_truncated, created_at)"
                    " VALUES ('e1', 'primary', 'legacy', 'queued', 0, false, false, :at)"
                ),
                {"at": created},
            )

        migrate.upgrade(database)

        with database.engine.connect() as connection:
            row = connection.execute(
                text("SELECT replays, queued_at = created_at FROM runs WHERE eval_id = 'e1'")
            ).one()
        assert (row[0], bool(row[1])) == (0, True)
    finally:
        database.dispose()


def test_the_migrate_command_uses_the_default_sqlite_file(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": "sqlite:///./.run/crucible.db"}
    command = [sys.executable, "-m", "crucible_storage.migrate"]

    first = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    second = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert f"at revision {migrate.head()}" in second.stdout
    assert (tmp_path / ".run" / "crucible.db").exists()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with database.engine.connect() as connection:
            pragmas = {
                name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout")
            }
    finally:
        database.dispose()
    assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 5000}


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg"),
        ("postgres://u@h/db", "postgresql+psycopg"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg"),
        ("sqlite:///./.run/crucible.db", "sqlite"),
    ],
)
def test_database_urls_are_normalized_to_psycopg_3(given: str, driver: str) -> None:
    assert normalize_url(given).drivername == driver


def test_other_databases_are_refused() -> None:
    with pytest.raises(ValueError, match="sqlite or postgresql"):
        normalize_url("mysql://u@h/db")


def test_start_up_gives_up_on_a_database_that_never_answers() -> None:
    database = Database(f"postgresql://nobody@127.0.0.1:{free_port()}/crucible")

    with pytest.raises(OperationalError):
        migrate.upgrade_when_reachable(database, wait_seconds=0)


def test_an_unreachable_database_makes_health_and_requests_answer_503(processes) -> None:
    url = f"postgresql://nobody@127.0.0.1:{free_port()}/crucible"
    with pytest.raises(Unavailable):
        Database(url).ping()
    storage = processes.process(
        "storage-no-db",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "crucible_storage.main:create_app",
            "--factory",
            "--port",
            str(port := free_port()),
        ],
        env={"DATABASE_URL": url, "MIGRATE_ON_START": "false", "INTERNAL_API_KEY": ""},
        ready=lambda _: httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 503,
    )

    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        health, listing = http.get("/health"), http.get("/evaluations")

    assert storage.alive()
    assert (health.status_code, health.json()["error"]["code"]) == (503, "unavailable")
    assert (listing.status_code, listing.json()["error"]["code"]) == (503, "unavailable")
