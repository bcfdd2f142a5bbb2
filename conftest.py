"""Cross-service fixtures: the whole Crucible suite started as real processes on free ports."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from crucible_contracts.status import Status
from crucible_runtime.pytest_plugin import (
    ManagedProcess,
    ProcessStarter,
    free_port,
    postgres_database,
    start_redis_server,
    wait_for,
)


@dataclass
class Suite:
    """Every Crucible process of one test run, and how to reach them."""

    starter: ProcessStarter
    env: dict[str, str]
    broker: ManagedProcess
    state_redis: ManagedProcess
    storage: ManagedProcess
    executors: list[ManagedProcess]
    queue_service: ManagedProcess
    queue_worker: ManagedProcess
    celery_worker: ManagedProcess
    # Gateways and extra Celery workers, in start order: those a test starts stop with the test
    # (`_stop_what_the_test_started`), so that no leader loop of an earlier test keeps polling.
    extras: list[ManagedProcess] = field(default_factory=list)

    def gateway(self, **env: str) -> ManagedProcess:
        """Start a gateway with this suite's wiring and `env` on top (e.g. CELERY_PERCENTAGE).

        Each gateway gets its own migration-settings key, so that its environment seeds its own
        document instead of reading the one another gateway of this session seeded. Each one
        therefore leads, and its reconciler would repair any run of the shared storage: it looks
        at none unless `env` asks (RECONCILE_*), so that no test repairs another test's runs.
        """
        own = {
            "MIGRATION_KEY_PREFIX": f"crucible:migration:{uuid.uuid4().hex[:8]}",
            "RECONCILE_QUEUED_AFTER_SECONDS": "86400",
            "RECONCILE_CELERY_QUEUED_AFTER_SECONDS": "86400",
            "RECONCILE_RUNNING_GRACE_SECONDS": "86400",
        }
        gateway = self.starter.service(
            "crucible_gateway.main:create_app", name="gateway", env={**self.env, **own, **env}
        )
        self.extras.append(gateway)
        return gateway

    def extra_celery_worker(
        self, name: str, *, concurrency: int = 1, queues: str | None = None, **env: str
    ) -> ManagedProcess:
        """Another Celery worker with this suite's wiring and `env` on top (e.g. its own broker)."""
        worker = start_celery_worker(
            self.starter, {**self.env, **env}, name=name, concurrency=concurrency, queues=queues
        )
        self.extras.append(worker)
        return worker

    def dead_letter_path(self, operator_token: str) -> DeadLetterPath:
        """A Celery path of its own whose runs all end as dead letters: its own broker, drained
        by a worker that reaches no executor (two quick retries), behind a gateway that sends
        everything there; `DeadLetterPath.mend` later drains it with a working worker."""
        broker = start_redis_server(self.starter)
        broken = self.extra_celery_worker(
            "broken-worker",
            CELERY_BROKER_URL=broker.url,
            EXECUTOR_SERVICE_URL=f"http://127.0.0.1:{free_port()}",
            TRANSIENT_RETRY_MAX_ATTEMPTS="2",
            TRANSIENT_RETRY_BASE_DELAY="0.05",
        )
        gateway = self.gateway(
            CELERY_ENABLED="true",
            CELERY_PERCENTAGE="1.0",
            CELERY_BROKER_URL=broker.url,
            OPERATOR_TOKEN=operator_token,
        )
        return DeadLetterPath(self, broker, broken, gateway)

    def parts(self) -> list[ManagedProcess]:
        """The suite's own processes, dependencies first (not the extras a test started)."""
        return [
            self.broker,
            self.state_redis,
            self.storage,
            *self.executors,
            self.queue_service,
            self.queue_worker,
            self.celery_worker,
        ]

    def heal(self) -> None:
        """Start again every part of the suite that is not running, dependencies first."""
        for part in self.parts():
            if not part.alive():
                self.starter.restart(part)

    @staticmethod
    def celery_command(*args: str) -> list[str]:
        return celery_command(*args)


@dataclass
class DeadLetterPath:
    """`Suite.dead_letter_path`: its broker, its broken worker and its gateway."""

    suite: Suite
    broker: ManagedProcess
    broken: ManagedProcess
    gateway: ManagedProcess

    def mend(self) -> ManagedProcess:
        """Stop the broken worker and drain the broker with one that reaches the executors."""
        self.broken.stop()
        return self.suite.extra_celery_worker("fixed-worker", CELERY_BROKER_URL=self.broker.url)


def _celery_worker_ready(env: dict[str, str]):
    from celery import Celery

    client = Celery(broker=env["CELERY_BROKER_URL"])

    def ready(_: ManagedProcess) -> bool:
        return bool(client.control.ping(timeout=0.5))

    return ready


def celery_command(*args: str) -> list[str]:
    """`celery -A crucible_worker.main:app <args>` with this interpreter."""
    return [sys.executable, "-m", "celery", "-A", "crucible_worker.main:app", *args]


def start_celery_worker(
    starter: ProcessStarter,
    env: dict[str, str],
    *,
    name: str,
    concurrency: int = 1,
    queues: str | None = None,
    wait: bool = True,
) -> ManagedProcess:
    """A prefork Celery worker with a unique node name; ready once it answers a ping on its broker
    (`wait=False` for one whose broker is not expected to answer)."""
    args = ["worker", "-P", "prefork", "-c", str(concurrency), "-n", f"{name}-{free_port()}@%h"]
    if queues:
        args += ["-Q", queues]
    ready = {"ready": _celery_worker_ready(env), "ready_timeout": 60} if wait else {}
    return starter.process(name, [*celery_command(*args), "--loglevel", "INFO"], env=env, **ready)


def start_suite(
    starter: ProcessStarter, run_dir: Path, *, durable_redis: bool = False, **overrides: str
) -> Suite:
    broker = start_redis_server(starter, appendonly=durable_redis)
    state = start_redis_server(starter, appendonly=durable_redis)
    env = {
        "CELERY_BROKER_URL": broker.url,
        "CELERY_RESULT_BACKEND": broker.url.replace("/0", "/1"),
        "DEAD_LETTER_REDIS_URL": broker.url,
        "REDIS_URL": state.url,
        "DATABASE_URL": f"sqlite:///{run_dir}/crucible.db",
        "LOG_LEVEL": "INFO",
        # End-to-end tests and make chaos send bursts from one tenant; the rate limit has its own
        # tests (services/api-gateway/tests/test_rate_limit.py), and a test may set it here.
        "RATE_LIMIT_PER_SECOND": "0",
        # Likewise the in-flight cap (tests/test_tenancy_e2e.py sets its own).
        "TENANT_MAX_IN_FLIGHT": "1000",
        **overrides,
    }
    storage = starter.service("crucible_storage.main:create_app", name="storage", env=env)
    env["STORAGE_SERVICE_URL"] = storage.url
    executors = [
        starter.service(
            "crucible_executor.main:create_app",
            name=f"executor-{n}",
            env={**env, "EXECUTOR_ID": f"executor-{n}", "SANDBOX_UID_BASE": str(61000 + 1000 * n)},
        )
        for n in (1, 2, 3)
    ]
    env["LEGACY_EXECUTOR_URL"] = executors[0].url
    env["EXECUTOR_SERVICE_URL"] = ",".join(e.url for e in executors[1:])
    queue_service = starter.service("crucible_queue.main:create_app", name="queue-service", env=env)
    env["QUEUE_SERVICE_URL"] = queue_service.url
    queue_worker = starter.process(
        "queue-worker", [sys.executable, "-m", "crucible_queue.worker"], env=env
    )
    celery_worker = start_celery_worker(
        starter, env, name="celery-worker", concurrency=2, queues="high,default,low,shadow"
    )
    return Suite(
        starter=starter,
        env=env,
        broker=broker,
        state_redis=state,
        storage=storage,
        executors=executors,
        queue_service=queue_service,
        queue_worker=queue_worker,
        celery_worker=celery_worker,
    )


@pytest.fixture(scope="session")
def suite(
    session_processes: ProcessStarter,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server_url: str,
) -> Iterator[Suite]:
    """The whole suite, shared by every end-to-end test that does not break any part of it.

    Its storage is on PostgreSQL, the production database; the suites of fault tests
    (`own_suite`, `durable_suite`) keep the embedded default, SQLite.
    """
    with postgres_database(postgres_server_url, prefix="crucible_suite") as database_url:
        yield start_suite(
            session_processes, tmp_path_factory.mktemp("suite"), DATABASE_URL=database_url
        )


@pytest.fixture(autouse=True)
def _stop_what_the_test_started(request: pytest.FixtureRequest) -> Iterator[None]:
    """Stop the gateways and extra workers a test started on the shared suite when it ends.

    Those a module-scoped fixture started (set up before this fixture) live on with the module's
    other tests; an idle gateway still runs its leader loop, so each one left behind would load
    storage and the CPU for the rest of the session.
    """
    if "suite" not in request.fixturenames:
        yield
        return
    suite: Suite = request.getfixturevalue("suite")
    mark = len(suite.extras)
    yield
    while len(suite.extras) > mark:
        suite.extras.pop().stop()


@pytest.fixture(scope="module")
def _module_suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    starter = ProcessStarter(tmp_path_factory.mktemp("module-suite-logs"))
    yield start_suite(starter, tmp_path_factory.mktemp("module-suite"))
    starter.stop_all()


@pytest.fixture(scope="module")
def durable_suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    """A whole suite of the module's own whose Redis keep an append-only file, as production's
    do (docker-compose.yml, `make run`): restarting either Redis is then a restart, not a wipe
    of every queued task. For fault injection (tests/test_chaos_e2e.py)."""
    starter = ProcessStarter(tmp_path_factory.mktemp("durable-suite-logs"))
    yield start_suite(starter, tmp_path_factory.mktemp("durable-suite"), durable_redis=True)
    starter.stop_all()


@pytest.fixture
def own_suite(_module_suite: Suite) -> Iterator[Suite]:
    """A whole suite apart from the shared one, which the test may break (fault tests).

    One per test module: after each test, what it started on the suite is stopped and every part
    it stopped or killed is started again (`Suite.heal`), so the next test finds it whole.
    """
    suite = _module_suite
    mark = len(suite.extras)
    yield suite
    while len(suite.extras) > mark:
        suite.extras.pop().stop()
    suite.heal()


class Client:
    """A client of the public API, as a user would drive it."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30)

    def submit(self, code: str, **fields) -> dict:
        response = self.http.post("/api/eval", json={"code": code, **fields})
        assert response.status_code == 202, response.text
        return response.json()

    def get(self, eval_id: str) -> dict:
        response = self.http.get(f"/api/eval/{eval_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait_done(self, eval_id: str, timeout: float = 60) -> dict:
        return wait_for(
            lambda: (view := self.get(eval_id)) and Status(view["status"]).is_terminal() and view,
            timeout=timeout,
            interval=0.05,
            what=f"evaluation {eval_id} to finish",
        )


@pytest.fixture
def client_for() -> Iterator:
    clients: list[Client] = []

    def make(gateway: ManagedProcess) -> Client:
        clients.append(Client(gateway.url))
        return clients[-1]

    yield make
    for client in clients:
        client.http.close()
