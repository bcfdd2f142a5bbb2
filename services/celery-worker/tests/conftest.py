"""Fixtures of the celery-worker tests: real Redis, storage, executors and prefork workers."""

from __future__ import annotations

import os
import signal
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from celery import Celery
from celery.result import AsyncResult
from prometheus_client.parser import text_string_to_metric_families

from crucible_contracts.ids import new_eval_id
from crucible_contracts.models import (
    DeadLetter,
    EvalTask,
    EvaluationCreate,
    EvaluationView,
    Event,
    Program,
)
from crucible_contracts.names import TASK_EVALUATE, Backend, EventName, Queue
from crucible_runtime.clients import StorageClient
from crucible_runtime.dead_letters import DeadLetterStore
from crucible_runtime.pytest_plugin import (
    ManagedProcess,
    ProcessStarter,
    free_port,
    start_redis_server,
    wait_for,
)
from crucible_runtime.pytest_plugin import wait_until_ended as _wait_until_ended

INTERNAL_KEY = "celery-worker-tests-internal-key"
WORKER_APP = "crucible_worker.main:app"


@dataclass
class Worker:
    """A real prefork worker and a client app on its broker (and result backend)."""

    process: ManagedProcess
    nodename: str
    broker_url: str
    client: Celery

    def broker(self) -> redis.Redis:
        return redis.Redis.from_url(self.broker_url)

    def dead_letters(self, **match: Any) -> list[DeadLetter]:
        """The entries of this worker's dead-letter queue whose fields equal `match`."""
        client = self.broker()
        try:
            entries = DeadLetterStore(client).list(limit=10_000)
        finally:
            client.close()
        return [e for e in entries if all(getattr(e, k) == v for k, v in match.items())]

    def idle(self) -> bool:
        """Nothing waits in its queues, and it runs, holds or schedules no task."""
        client = self.broker()
        try:
            waiting = sum(client.llen(queue.value) for queue in Queue)
        finally:
            client.close()
        inspect = self.client.control.inspect([self.nodename], timeout=1)
        held = [inspect.active(), inspect.reserved(), inspect.scheduled()]
        return waiting == 0 and not any((found or {}).get(self.nodename) for found in held)


@dataclass
class Stack:
    storage_url: str
    executor_urls: list[str]
    worker: Worker


def _storage(starter: ProcessStarter, db_dir: Path, redis_url: str | None = None) -> ManagedProcess:
    env = {"DATABASE_URL": f"sqlite:///{db_dir / 'crucible.db'}", "INTERNAL_API_KEY": INTERNAL_KEY}
    if redis_url:
        env["REDIS_URL"] = redis_url
    return starter.service("crucible_storage.main:create_app", name="storage", env=env)


def _executor(starter: ProcessStarter, executor_id: str, slots: int = 4) -> ManagedProcess:
    return starter.service(
        "crucible_executor.main:create_app",
        name=executor_id,
        env={
            "EXECUTOR_ID": executor_id,
            "EXECUTOR_SLOTS": str(slots),
            "INTERNAL_API_KEY": INTERNAL_KEY,
        },
    )


def _client_app(broker_url: str, backend_url: str | None) -> Celery:
    app = Celery("crucible-worker-tests", broker=broker_url, backend=backend_url)
    app.conf.update(task_serializer="json", accept_content=["json"])
    return app


def _start_worker(
    starter: ProcessStarter,
    *,
    broker_url: str,
    storage_url: str,
    executor_urls: list[str],
    env: dict[str, str] | None = None,
    concurrency: int = 2,
) -> Worker:
    nodename = f"crucible-{uuid.uuid4().hex[:8]}@localhost"
    backend_url = broker_url.rsplit("/", 1)[0] + "/1"
    full_env = {
        "CELERY_BROKER_URL": broker_url,
        "CELERY_RESULT_BACKEND": backend_url,
        "STORAGE_SERVICE_URL": storage_url,
        "EXECUTOR_SERVICE_URL": ",".join(executor_urls),
        "INTERNAL_API_KEY": INTERNAL_KEY,
        **(env or {}),
    }
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        WORKER_APP,
        "worker",
        "-P",
        "prefork",
        "-c",
        str(concurrency),
        "-Q",
        ",".join(queue.value for queue in Queue),
        "-n",
        nodename,
        "--loglevel",
        "INFO",
        # One worker per broker here: nobody to synchronise with at start-up.
        "--without-mingle",
    ]
    client = _client_app(broker_url, backend_url)

    def answers_ping(_: ManagedProcess) -> bool:
        return bool(client.control.ping(destination=[nodename], timeout=0.5))

    process = starter.process(
        nodename.split("@")[0], argv, env=full_env, ready=answers_ping, ready_timeout=60
    )
    return Worker(process=process, nodename=nodename, broker_url=broker_url, client=client)


@pytest.fixture(scope="session")
def stack(
    session_processes: ProcessStarter, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """Storage, executor-2 and executor-3, and one worker over both, on a private Redis."""
    redis_server = start_redis_server(session_processes)
    storage = _storage(
        session_processes, tmp_path_factory.mktemp("storage"), redis_server.url[:-1] + "2"
    )
    executors = [_executor(session_processes, f"executor-{n}") for n in (2, 3)]
    executor_urls = [executor.url for executor in executors]
    worker = _start_worker(
        session_processes,
        broker_url=redis_server.url,
        storage_url=storage.url,
        executor_urls=executor_urls,
        env={"MAX_WORKER_LOSSES": "2"},
    )
    yield Stack(storage_url=storage.url, executor_urls=executor_urls, worker=worker)
    worker.client.close()


@pytest.fixture
def storage(stack: Stack) -> Iterator[StorageClient]:
    client = StorageClient(stack.storage_url, internal_key=INTERNAL_KEY)
    yield client
    client.close()


@pytest.fixture
def start_worker(processes: ProcessStarter) -> Iterator[Callable[..., Worker]]:
    """Start a worker of its own (own private Redis as broker) for this test; stopped after it."""
    started: list[Worker] = []

    def start(
        *,
        storage_url: str,
        executor_urls: list[str],
        broker_url: str | None = None,
        concurrency: int = 2,
        **env: str,
    ) -> Worker:
        worker = _start_worker(
            processes,
            broker_url=broker_url or start_redis_server(processes).url,
            storage_url=storage_url,
            executor_urls=executor_urls,
            env=env,
            concurrency=concurrency,
        )
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.client.close()


@pytest.fixture
def celery_client() -> Iterator[Callable[[str], Celery]]:
    """A sending Celery app on a broker, for tests that publish before a worker exists."""
    apps: list[Celery] = []

    def make(broker_url: str) -> Celery:
        apps.append(_client_app(broker_url, None))
        return apps[-1]

    yield make
    for app in apps:
        app.close()


@pytest.fixture
def start_executor(processes: ProcessStarter) -> Callable[..., ManagedProcess]:
    """Start an executor for this test alone (e.g. one the test will stop)."""

    def start(executor_id: str, *, slots: int = 4) -> ManagedProcess:
        return _executor(processes, executor_id, slots)

    return start


@pytest.fixture
def submit() -> Callable[..., tuple[str, AsyncResult]]:
    """Create an evaluation in storage, then send `tasks.evaluate_code` for it by name."""

    def send(
        client: Celery,
        storage: StorageClient,
        code: str,
        *,
        timeout: float = 10,
        queue: Queue = Queue.DEFAULT,
        before_send: Callable[[str], Any] | None = None,
        extra_kwargs: dict[str, Any] | None = None,
        eval_id: str | None = None,
        **options: Any,
    ) -> tuple[str, AsyncResult]:
        eval_id = eval_id or new_eval_id()
        program = Program(code=code, language="python", timeout=timeout)
        storage.create_evaluation(
            EvaluationCreate(eval_id=eval_id, program=program, backend=Backend.CELERY)
        )
        if before_send is not None:
            before_send(eval_id)
        task = EvalTask(eval_id=eval_id, backend=Backend.CELERY, program=program)
        result = client.send_task(
            TASK_EVALUATE,
            kwargs={"task": task.model_dump(mode="json"), **(extra_kwargs or {})},
            queue=queue.value,
            **options,
        )
        return eval_id, result

    return send


@pytest.fixture
def wait_until_ended() -> Callable[..., EvaluationView]:
    """Poll storage until the evaluation reaches a terminal status; returns it."""
    return _wait_until_ended


@pytest.fixture
def dead_url() -> Callable[[], str]:
    """Makes URLs of loopback ports nothing listens on."""
    return lambda: f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def retries_of() -> Callable[[StorageClient, str], list[Event]]:
    """The `eval.retried` events of an evaluation, oldest first."""

    def retries(storage: StorageClient, eval_id: str) -> list[Event]:
        return [event for event in storage.events(eval_id) if event.event == EventName.RETRIED]

    return retries


@pytest.fixture
def executor_sample() -> Callable[..., float]:
    """The sum of an executor's Prometheus samples called `name` that carry `labels`."""

    def sample(url: str, name: str, **labels: str) -> float:
        text = httpx.get(f"{url}/metrics", timeout=5).text
        return sum(
            found.value
            for family in text_string_to_metric_families(text)
            for found in family.samples
            if found.name == name and labels.items() <= found.labels.items()
        )

    return sample


@pytest.fixture
def executor_busy() -> Callable[[str], int]:
    """How many of an executor's slots run a program now (from its /health)."""
    return lambda url: httpx.get(f"{url}/health", timeout=5).json()["busy"]


@pytest.fixture
def kill_pool_process() -> Callable[..., int]:
    """SIGKILL the worker process running a task, once it runs it (as the OOM killer would)."""

    def kill(worker: Worker, task_id: str, *, after_pid: int | None = None) -> int:
        inspect = worker.client.control.inspect([worker.nodename], timeout=1)

        def pool_pid() -> int | None:
            active = (inspect.active() or {}).get(worker.nodename, [])
            pids = [task["worker_pid"] for task in active if task["id"] == task_id]
            return next((pid for pid in pids if pid != after_pid), None)

        pid = wait_for(pool_pid, timeout=15, what=f"task {task_id} to run in a new process")
        os.kill(pid, signal.SIGKILL)
        return pid

    return kill
