"""Fixtures of the storage tests: real SQLite files and real PostgreSQL databases, migrated, and
real storage processes on top of them."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from crucible_contracts.ids import new_eval_id
from crucible_contracts.models import (
    ComparisonOutcome,
    ComparisonRecord,
    ComparisonView,
    EvaluationCreate,
    EvaluationView,
    Event,
    Program,
    RunCreate,
    RunUpdate,
    RunView,
    StuckRun,
)
from crucible_contracts.names import Backend, Role
from crucible_contracts.status import Status
from crucible_runtime.clients import StorageClient
from crucible_runtime.pytest_plugin import ManagedProcess, ProcessStarter, postgres_database
from crucible_storage import migrate, repository, service
from crucible_storage.db import Database
from crucible_storage.events import EventPublisher
from crucible_storage.tables import Comparison, Run

DATABASES = ["sqlite", "postgresql"]
APP = "crucible_storage.main:create_app"
# The internal key of the shared storage processes.
INTERNAL_KEY = "storage-tests-internal-key-0123456789"

# How to reach each status from queued, one legal step at a time.
PATH_TO: dict[Status, list[Status]] = {
    Status.QUEUED: [],
    Status.RUNNING: [Status.RUNNING],
    **{
        status: [Status.RUNNING, status]
        for status in (Status.COMPLETED, Status.FAILED, Status.TIMEOUT)
    },
    Status.CANCELLED: [Status.CANCELLED],
    Status.ERROR: [Status.RUNNING, Status.ERROR],
}


def _evaluation_create(**fields: object) -> EvaluationCreate:
    """`fields` override the defaults, the program's fields (code, stdin, ...) included."""
    program = {"code": "print('hi')", "language": "python", "timeout": 5}
    program.update({name: fields.pop(name) for name in Program.model_fields if name in fields})
    body = {"eval_id": new_eval_id(), "program": program, "backend": Backend.LEGACY, **fields}
    return EvaluationCreate.model_validate(body)


def _sqlite_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'crucible.db'}"


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per session, which tests copy."""
    path = tmp_path_factory.mktemp("migrated") / "crucible.db"
    db = Database(f"sqlite:///{path}")
    migrate.upgrade(db)
    with db.engine.connect() as connection:
        # Everything into the main file, so that copying it alone copies the database.
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    db.dispose()
    return path


@pytest.fixture(scope="session")
def migrated_postgres(postgres_server_url: str) -> Iterator[str]:
    """A PostgreSQL database migrated to head once per session, the template of tests' copies."""
    with postgres_database(postgres_server_url, prefix="crucible_migrated") as url:
        db = Database(url)
        migrate.upgrade(db)
        db.dispose()  # CREATE DATABASE ... TEMPLATE needs it without connections
        yield url


@contextmanager
def _migrated_copy(request: pytest.FixtureRequest, kind: str, folder: Path) -> Iterator[str]:
    """A database of `kind` at head: a copy of the session's migrated one (cheaper than
    migrating each new database, which rebuilds tables on SQLite)."""
    if kind == "sqlite":
        shutil.copyfile(request.getfixturevalue("migrated_sqlite"), folder / "crucible.db")
        yield _sqlite_url(folder)
        return
    template = request.getfixturevalue("migrated_postgres")
    server = request.getfixturevalue("postgres_server_url")
    with postgres_database(server, template=template) as url:
        yield url


@pytest.fixture(params=DATABASES)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database for this test: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return _sqlite_url(tmp_path)
    return request.getfixturevalue("postgres_url")


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of each kind for this test alone, migrated to head."""
    with _migrated_copy(request, request.param, tmp_path) as url:
        yield url


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    yield db
    db.dispose()


@pytest.fixture(scope="module", params=DATABASES)
def shared_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One database per module and kind, migrated, for tests that each work on their own eval_ids."""
    with _migrated_copy(request, request.param, tmp_path_factory.mktemp("shared-db")) as url:
        yield url


@pytest.fixture(scope="module")
def shared_database(shared_database_url: str) -> Iterator[Database]:
    db = Database(shared_database_url)
    yield db
    db.dispose()


class ServiceDriver:
    """Calls crucible_storage.service on a real database with one session per call, as routes do."""

    def __init__(self, database: Database, publisher: EventPublisher) -> None:
        self.database = database
        self.publisher = publisher

    def create(self, **fields: object) -> EvaluationView:
        create = _evaluation_create(**fields)
        with self.database.writer() as session:
            return service.create_evaluation(
                session=session, publisher=self.publisher, create=create
            )

    def update(self, eval_id: str, role: Role = Role.PRIMARY, **fields: object) -> RunView:
        with self.database.writer() as session:
            return service.update_run(
                session=session,
                publisher=self.publisher,
                eval_id=eval_id,
                role=role,
                update=RunUpdate.model_validate(fields),
            )

    def walk_to(self, eval_id: str, status: Status, role: Role = Role.PRIMARY) -> RunView | None:
        """Move the run of `role` from queued to `status` by legal steps."""
        view = None
        for step in PATH_TO[status]:
            view = self.update(eval_id, role=role, status=step)
        return view

    def replay(self, eval_id: str, role: Role = Role.PRIMARY, *, max_replays: int = 3) -> RunView:
        with self.database.writer() as session:
            return service.replay_run(
                session=session,
                publisher=self.publisher,
                eval_id=eval_id,
                role=role,
                max_replays=max_replays,
            )

    def stuck(self, **query: object) -> list[StuckRun]:
        """service.stuck_runs with `query` (queued_before, running_before, backend, limit)."""
        with self.database.reader() as session:
            return service.stuck_runs(session=session, **query)

    def add_shadow(self, eval_id: str, backend: Backend = Backend.CELERY) -> RunView:
        with self.database.writer() as session:
            return service.add_run(
                session=session,
                publisher=self.publisher,
                eval_id=eval_id,
                run=RunCreate(role=Role.SHADOW, backend=backend),
            )

    def compare(
        self, eval_id: str, outcome: ComparisonOutcome = ComparisonOutcome.MATCH, **fields: object
    ) -> ComparisonView:
        record = ComparisonRecord.model_validate({"outcome": outcome, **fields})
        with self.database.writer() as session:
            view, _ = service.record_comparison(session=session, eval_id=eval_id, record=record)
        return view

    def set_created_at(self, eval_id: str, created_at: datetime) -> None:
        """Back-date the evaluation (its runs keep their own created_at)."""
        with self.database.writer() as session:
            repository.set_created_at(session, eval_id=eval_id, created_at=created_at)
            session.commit()

    def set_run_times(self, eval_id: str, role: Role = Role.PRIMARY, **times: datetime) -> None:
        """Overwrite created_at / queued_at / started_at / completed_at of a run: durations a test
        can know."""
        with self.database.writer() as session:
            session.execute(
                update(Run).where(Run.eval_id == eval_id, Run.role == role).values(**times)
            )
            session.commit()

    def set_compared_at(self, eval_id: str, created_at: datetime) -> None:
        with self.database.writer() as session:
            session.execute(
                update(Comparison)
                .where(Comparison.eval_id == eval_id)
                .values(created_at=created_at)
            )
            session.commit()

    def get(self, eval_id: str) -> EvaluationView:
        with self.database.reader() as session:
            return service.get_evaluation(session=session, eval_id=eval_id)

    def events(self, eval_id: str) -> list[Event]:
        with self.database.reader() as session:
            return service.list_events(session=session, eval_id=eval_id)


@pytest.fixture
def store(database: Database) -> ServiceDriver:
    """The service layer on a fresh database of each kind; events are not published."""
    return ServiceDriver(database, EventPublisher(None))


@pytest.fixture
def pg_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServiceDriver]:
    """The service layer on a fresh PostgreSQL database only (row-lock behaviour)."""
    with _migrated_copy(request, "postgresql", tmp_path) as url:
        db = Database(url)
        yield ServiceDriver(db, EventPublisher(None))
        db.dispose()


@pytest.fixture
def shared_store(shared_database: Database) -> ServiceDriver:
    """The service layer on this module's database of each kind."""
    return ServiceDriver(shared_database, EventPublisher(None))


def _storage_env(database_url: str, **env: str) -> dict[str, str]:
    # Explicit blanks so that variables of the calling shell never leak into a test.
    return {"DATABASE_URL": database_url, "REDIS_URL": "", "INTERNAL_API_KEY": "", **env}


@pytest.fixture
def start_storage(processes: ProcessStarter, database_url: str) -> Callable[..., ManagedProcess]:
    """Start a real storage process on `database_url`; keyword arguments are extra environment."""

    def start(**env: str) -> ManagedProcess:
        return processes.service(APP, name="storage", env=_storage_env(database_url, **env))

    return start


@pytest.fixture(scope="module")
def shared_storage_env() -> dict[str, str]:
    """Extra environment of this module's storage process; a module overrides it (e.g. REDIS_URL)."""
    return {}


@pytest.fixture(scope="module")
def shared_storage(
    session_processes: ProcessStarter, shared_database_url: str, shared_storage_env: dict[str, str]
) -> Iterator[ManagedProcess]:
    """A storage process on this module's database of each kind, stopped with the module.

    It asks for INTERNAL_KEY, as production's does: `shared_client` and `shared_http` send it,
    and a test of what a call without it gets needs no process of its own.
    """
    env = _storage_env(shared_database_url, INTERNAL_API_KEY=INTERNAL_KEY, **shared_storage_env)
    managed = session_processes.service(APP, name="storage-shared", env=env)
    yield managed
    managed.stop()


@pytest.fixture
def internal_key() -> str:
    """The internal key the shared storage processes ask for."""
    return INTERNAL_KEY


@pytest.fixture
def shared_client(shared_storage: ManagedProcess) -> Iterator[StorageClient]:
    client = StorageClient(shared_storage.url, internal_key=INTERNAL_KEY)
    yield client
    client.close()


@pytest.fixture
def shared_http(shared_storage: ManagedProcess) -> Iterator[httpx.Client]:
    """Plain HTTP to this module's storage process, with the internal key."""
    headers = {"X-Internal-Key": INTERNAL_KEY}
    with httpx.Client(base_url=shared_storage.url, headers=headers, timeout=30) as http:
        yield http


@pytest.fixture
def new_evaluation() -> Callable[..., EvaluationCreate]:
    """An EvaluationCreate with a fresh eval_id; keyword arguments override its fields."""

    return _evaluation_create
