"""Fixtures of the queue-service tests: real queue-service, storage, executor and worker processes."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from crucible_contracts.ids import new_eval_id
from crucible_contracts.models import EvalTask, EvaluationCreate, EvaluationView, Program
from crucible_contracts.names import INTERNAL_KEY_HEADER, Backend, Role
from crucible_runtime.clients import StorageClient
from crucible_runtime.pytest_plugin import (
    ManagedProcess,
    ProcessStarter,
    free_port,
    wait_until_ended,
)

KEY = "queue-tests-internal-key-0123456789"
QUEUE_APP = "crucible_queue.main:create_app"
STORAGE_APP = "crucible_storage.main:create_app"
EXECUTOR_APP = "crucible_executor.main:create_app"

# Short retry policies keep the fault tests fast; each test widens what it needs.
FAST_RETRIES = {
    "TRANSIENT_RETRY_MAX_ATTEMPTS": "3",
    "TRANSIENT_RETRY_BASE_DELAY": "0.05",
    "TRANSIENT_RETRY_MAX_DELAY": "0.2",
    "BUSY_RETRY_BASE_DELAY": "0.05",
    "BUSY_RETRY_MAX_DELAY": "0.3",
    "RECORD_RETRY_BASE_DELAY": "0.1",
    "RECORD_RETRY_MAX_DELAY": "0.5",
}


def _env(values: dict[str, object]) -> dict[str, str]:
    return {key.upper(): str(value) for key, value in values.items()}


@pytest.fixture
def make_task() -> Callable[..., EvalTask]:
    """An EvalTask for a fresh eval_id (or the one given)."""

    def make(code: str = "print('hi')", **fields: object) -> EvalTask:
        """`fields` override the defaults, the program's fields (stdin, timeout, ...) included."""
        program = {"code": code, "language": "python", "timeout": 10}
        program.update({name: fields.pop(name) for name in Program.model_fields if name in fields})
        values = {"eval_id": new_eval_id(), "backend": Backend.LEGACY, **fields}
        return EvalTask(program=Program(**program), **values)

    return make


@pytest.fixture
def start_queue(processes: ProcessStarter) -> Callable[..., ManagedProcess]:
    """Start a queue-service (settings as keyword arguments, e.g. queue_lease_seconds=1)."""

    def start(port: int | None = None, **settings: object) -> ManagedProcess:
        env = _env({"internal_api_key": KEY, **settings})
        return processes.service(QUEUE_APP, name="queue-service", env=env, port=port)

    return start


@pytest.fixture
def queue_service(start_queue: Callable[..., ManagedProcess]) -> ManagedProcess:
    """A queue-service of this test alone (one it may stop)."""
    return start_queue()


@pytest.fixture(scope="module")
def module_queue_service(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ManagedProcess]:
    """A queue-service the tests of one module share; `queue_http` leaves it empty after each."""
    starter = ProcessStarter(tmp_path_factory.mktemp("module-queue"))
    try:
        env = _env({"internal_api_key": KEY})
        yield starter.service(QUEUE_APP, name="module-queue-service", env=env)
    finally:
        starter.stop_all()


@pytest.fixture
def queue_http(module_queue_service: ManagedProcess) -> Iterator[httpx.Client]:
    """An HTTP client of the module's queue-service, carrying the internal key.

    The queue is empty when a test starts: afterwards every task the test leased is completed
    and every task still queued is leased and completed. Counters (`*_total`, the finished
    states) carry over between tests, so tests compare them before and after.
    """
    leased: list[str] = []

    def note_lease(response: httpx.Response) -> None:
        if response.request.url.path == "/tasks/next" and response.status_code == 200:
            response.read()
            leased.append(response.json()["task_id"])

    with httpx.Client(
        base_url=module_queue_service.url,
        headers={INTERNAL_KEY_HEADER: KEY},
        timeout=5,
        event_hooks={"response": [note_lease]},
    ) as client:
        yield client
        while client.get("/tasks/next").status_code == 200:
            pass
        for task_id in leased:
            client.post(f"/tasks/{task_id}/complete")
        assert client.get("/status").json()["processing"] == 0, "a task was left leased"


@pytest.fixture
def start_storage(processes: ProcessStarter, tmp_path: Path, redis_url: str):
    """Start a storage process of this test alone, on SQLite in tmp_path (restartable in place)."""

    def start() -> ManagedProcess:
        env = {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'storage.db'}",
            "REDIS_URL": redis_url,
            "INTERNAL_API_KEY": KEY,
        }
        return processes.service(STORAGE_APP, name="storage", env=env, port=free_port())

    return start


@pytest.fixture
def start_executor(processes: ProcessStarter):
    """Start an executor of this test alone (restartable in place)."""

    def start(slots: int = 2, executor_id: str = "executor-queue-test") -> ManagedProcess:
        env = {"EXECUTOR_ID": executor_id, "EXECUTOR_SLOTS": str(slots), "INTERNAL_API_KEY": KEY}
        return processes.service(EXECUTOR_APP, name="executor", env=env, port=free_port())

    return start


@pytest.fixture(scope="session")
def shared_storage(
    session_processes: ProcessStarter, tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> ManagedProcess:
    """A storage process shared by the tests that do not break it."""
    db = tmp_path_factory.mktemp("storage") / "storage.db"
    env = {"DATABASE_URL": f"sqlite:///{db}", "REDIS_URL": redis_url, "INTERNAL_API_KEY": KEY}
    return session_processes.service(STORAGE_APP, name="shared-storage", env=env)


@pytest.fixture(scope="session")
def shared_executor(session_processes: ProcessStarter) -> ManagedProcess:
    """An executor shared by the tests that do not break it."""
    env = {"EXECUTOR_ID": "executor-shared", "EXECUTOR_SLOTS": "4", "INTERNAL_API_KEY": KEY}
    return session_processes.service(EXECUTOR_APP, name="shared-executor", env=env)


@pytest.fixture
def start_worker(processes: ProcessStarter):
    """Start the real queue-worker process against the given services."""

    def start(*, queue: str, storage: str, executors: str, **settings: object) -> ManagedProcess:
        env = _env(
            {
                "queue_service_url": queue,
                "storage_service_url": storage,
                "legacy_executor_url": executors,
                "internal_api_key": KEY,
                "queue_worker_concurrency": 2,
                **FAST_RETRIES,
                **settings,
            }
        )
        argv = [sys.executable, "-m", "crucible_queue.worker"]
        return processes.process("queue-worker", argv, env=env)

    return start


@pytest.fixture
def storage_of() -> Iterator[Callable[[ManagedProcess], StorageClient]]:
    """A StorageClient (with the internal key) of a storage process."""
    clients: list[StorageClient] = []

    def make(storage: ManagedProcess) -> StorageClient:
        clients.append(StorageClient(storage.url, internal_key=KEY, timeout=5))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def internal_key() -> str:
    return KEY


@pytest.fixture
def enqueue() -> Callable[[str, EvalTask], httpx.Response]:
    """POST /tasks on a queue-service, as the gateway does; asserts 201."""
    return _enqueue


@pytest.fixture
def submit(make_task: Callable[..., EvalTask]):
    """Create an evaluation in storage, then enqueue its primary run: what the gateway does."""

    def do(
        storage: StorageClient, queue_url: str, code: str = "print('hi')", **fields: object
    ) -> EvalTask:
        task = make_task(code, **fields)
        storage.create_evaluation(
            EvaluationCreate(eval_id=task.eval_id, program=task.program, backend=Backend.LEGACY)
        )
        _enqueue(queue_url, task)
        return task

    return do


def _enqueue(queue_url: str, task: EvalTask) -> httpx.Response:
    response = httpx.post(
        f"{queue_url}/tasks",
        json=task.model_dump(mode="json"),
        headers={INTERNAL_KEY_HEADER: KEY},
        timeout=5,
    )
    assert response.status_code == 201, response.text
    return response


@pytest.fixture
def wait_ended() -> Callable[..., EvaluationView]:
    """Wait until the evaluation's primary run is terminal; returns its view."""
    return wait_until_ended


@pytest.fixture
def queue_task() -> Callable[[str, EvalTask], dict]:
    """GET /tasks/{task_id} of a task on a queue-service."""

    def get(queue_url: str, task: EvalTask, role: Role = Role.PRIMARY) -> dict:
        response = httpx.get(
            f"{queue_url}/tasks/{task.eval_id}:{role}",
            headers={INTERNAL_KEY_HEADER: KEY},
            timeout=5,
        )
        response.raise_for_status()
        return response.json()

    return get
