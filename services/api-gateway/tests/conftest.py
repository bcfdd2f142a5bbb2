"""Fixtures of the gateway's tests: real storage, queue-service, broker Redis, executor and gateway
processes."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import redis

from crucible_runtime.clients import StorageClient
from crucible_runtime.pytest_plugin import ManagedProcess, ProcessStarter

INTERNAL_KEY = "gateway-tests-internal-key"
GATEWAY_APP = "crucible_gateway.main:create_app"
OPERATORS = "alice:alice-operator-token,bob:bob-operator-token"
# Every gateway here leads (each has its own key prefix) and many share one storage: their
# reconcilers must not repair other tests' runs. Tests of housekeeping set their own values.
QUIET_HOUSEKEEPING = {
    "RECONCILE_QUEUED_AFTER_SECONDS": "86400",
    "RECONCILE_CELERY_QUEUED_AFTER_SECONDS": "86400",
    "RECONCILE_RUNNING_GRACE_SECONDS": "86400",
}
# Tests send bursts from one tenant into queues nobody drains; only test_rate_limit.py meets the
# rate limit and test_tenancy.py the in-flight cap (each sets its own).
NO_RATE_LIMIT = {"RATE_LIMIT_PER_SECOND": "0", "TENANT_MAX_IN_FLIGHT": "100000"}


def unique_prefix() -> str:
    """A migration key prefix no other gateway of the session reads (each env seeds its own)."""
    return f"crucible:migration:test:{uuid.uuid4().hex[:10]}"


def _start_storage(starter: ProcessStarter, directory: Path) -> ManagedProcess:
    env = {
        "DATABASE_URL": f"sqlite:///{directory / 'crucible.db'}",
        "INTERNAL_API_KEY": INTERNAL_KEY,
    }
    return starter.service("crucible_storage.main:create_app", name="storage", env=env)


def _start_queue_service(starter: ProcessStarter) -> ManagedProcess:
    return starter.service(
        "crucible_queue.main:create_app",
        name="queue-service",
        env={"INTERNAL_API_KEY": INTERNAL_KEY},
    )


@pytest.fixture(scope="session")
def storage(
    session_processes: ProcessStarter, tmp_path_factory: pytest.TempPathFactory
) -> ManagedProcess:
    """A storage service shared by the session (SQLite in a temporary directory)."""
    return _start_storage(session_processes, tmp_path_factory.mktemp("storage"))


@pytest.fixture(scope="session")
def queue_service(session_processes: ProcessStarter) -> ManagedProcess:
    """A queue-service shared by the session; tests that stop one use `own_queue_service`."""
    return _start_queue_service(session_processes)


@pytest.fixture
def own_queue_service(processes: ProcessStarter) -> ManagedProcess:
    """A queue-service owned by this test alone, which it may stop."""
    return _start_queue_service(processes)


@pytest.fixture
def own_storage(processes: ProcessStarter, tmp_path: Path) -> ManagedProcess:
    """A storage service owned by this test alone, which it may stop."""
    return _start_storage(processes, tmp_path)


@pytest.fixture
def backdate(tmp_path: Path) -> Callable[..., None]:
    """backdate(eval_id, table="evaluations", role=None, **times): move timestamps in the SQLite
    file of this test's `own_storage`. The API never moves them; ages are what the purge and the
    reconciler judge by, and waiting days or minutes for them is not an option."""

    def set_times(
        eval_id: str, *, table: str = "evaluations", role: str | None = None, **times: datetime
    ) -> None:
        # SQLAlchemy keeps SQLite datetimes as naive UTC text in this format (sorts as it should).
        values = [t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") for t in times.values()]
        where = "eval_id = ?" + (" AND role = ?" if role else "")
        assignments = ", ".join(f"{column} = ?" for column in times)
        with closing(sqlite3.connect(tmp_path / "crucible.db", timeout=10)) as db, db:
            found = db.execute(
                f"UPDATE {table} SET {assignments} WHERE {where}",
                [*values, eval_id, *([role] if role else [])],
            )
        assert found.rowcount, f"nothing to back-date for {eval_id} in {table}"

    return set_times


@pytest.fixture
def own_executor(processes: ProcessStarter) -> ManagedProcess:
    """An executor (two slots) owned by this test alone."""
    return processes.service(
        "crucible_executor.main:create_app",
        name="executor",
        env={"EXECUTOR_ID": "executor-1", "EXECUTOR_SLOTS": "2", "INTERNAL_API_KEY": INTERNAL_KEY},
    )


@pytest.fixture
def internal() -> Callable[[str], httpx.Client]:
    """An HTTP client of an internal service, carrying the internal key."""

    def client(url: str) -> httpx.Client:
        return httpx.Client(base_url=url, headers={"X-Internal-Key": INTERNAL_KEY}, timeout=10)

    return client


@pytest.fixture
def storage_client() -> Callable[[ManagedProcess], StorageClient]:
    """A StorageClient of a storage process of these tests, carrying the internal key."""
    clients: list[StorageClient] = []

    def client(managed: ManagedProcess) -> StorageClient:
        clients.append(StorageClient(managed.url, internal_key=INTERNAL_KEY, timeout=5))
        return clients[-1]

    yield client
    for made in clients:
        made.close()


@pytest.fixture
def broker_redis(redis_server: ManagedProcess) -> redis.Redis:
    """A client of this test's private broker Redis (`redis_server`)."""
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


@pytest.fixture
def start_gateway(
    processes: ProcessStarter,
    storage: ManagedProcess,
    queue_service: ManagedProcess,
    redis_url: str,
) -> Callable[..., ManagedProcess]:
    """Start a real gateway process. Keyword arguments become its environment (upper-cased);
    `storage`, `queue` and `broker` override the URLs of its dependencies. Its state Redis is the
    session Redis under a fresh MIGRATION_KEY_PREFIX unless `redis_url`/`migration_key_prefix`
    are given."""

    def start(
        *,
        broker: str,
        queue: str | None = None,
        storage_url: str | None = None,
        **env: object,
    ) -> ManagedProcess:
        full_env = {
            "STORAGE_SERVICE_URL": storage_url or storage.url,
            "QUEUE_SERVICE_URL": queue or queue_service.url,
            "CELERY_BROKER_URL": broker,
            "INTERNAL_API_KEY": INTERNAL_KEY,
            "API_KEYS": "",
            "CELERY_ENABLED": "false",
            "CELERY_PERCENTAGE": "0",
            "FORCE_LEGACY_QUEUE": "false",
            "REDIS_URL": redis_url,
            "MIGRATION_KEY_PREFIX": unique_prefix(),
            "OPERATOR_TOKEN": OPERATORS,
            **QUIET_HOUSEKEEPING,
            **NO_RATE_LIMIT,
            **{key.upper(): str(value) for key, value in env.items()},
        }
        return processes.service(GATEWAY_APP, name="gateway", env=full_env)

    return start


@pytest.fixture(scope="session")
def shared_gateway(
    session_processes: ProcessStarter,
    storage: ManagedProcess,
    queue_service: ManagedProcess,
    redis_url: str,
) -> ManagedProcess:
    """One gateway (Celery enabled, 50 %) for tests that only read or validate.

    Its broker is a database of the session Redis no other suite uses, so that no Celery worker
    started by another service's tests ever sees the tasks it publishes.
    """
    broker = redis_url.rsplit("/", 1)[0] + "/13"
    env = {
        "STORAGE_SERVICE_URL": storage.url,
        "QUEUE_SERVICE_URL": queue_service.url,
        "CELERY_BROKER_URL": broker,
        "INTERNAL_API_KEY": INTERNAL_KEY,
        "API_KEYS": "",
        "CELERY_ENABLED": "true",
        "CELERY_PERCENTAGE": "0.5",
        "FORCE_LEGACY_QUEUE": "false",
        "REDIS_URL": redis_url,
        "MIGRATION_KEY_PREFIX": unique_prefix(),
        **QUIET_HOUSEKEEPING,
        **NO_RATE_LIMIT,
    }
    return session_processes.service(GATEWAY_APP, name="shared-gateway", env=env)


@pytest.fixture
def api(shared_gateway: ManagedProcess) -> httpx.Client:
    with httpx.Client(base_url=shared_gateway.url, timeout=30) as client:
        yield client


@pytest.fixture
def state_redis(redis_url: str) -> redis.Redis:
    """A client of the session's state Redis (tests use their own key prefixes in it)."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def session_broker(redis_url: str) -> str:
    """A broker database of the session Redis that no Celery worker drains (tasks just wait)."""
    return redis_url.rsplit("/", 1)[0] + "/13"


@pytest.fixture
def admin() -> Callable[..., httpx.Client]:
    """An HTTP client of a gateway as operator `alice` (or with the given headers)."""
    clients: list[httpx.Client] = []

    def client(url: str, headers: dict | None = None) -> httpx.Client:
        if headers is None:
            headers = {"Authorization": "Bearer alice-operator-token"}
        made = httpx.Client(base_url=url, headers=headers, timeout=10)
        clients.append(made)
        return made

    yield client
    for made in clients:
        made.close()
