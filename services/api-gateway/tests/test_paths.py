"""`Paths` hands each call to the adapter of the run's backend; the adapters over real processes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from crucible_contracts.errors import Conflict, NotFound, Unavailable
from crucible_contracts.ids import new_eval_id
from crucible_contracts.models import EvalTask, Program
from crucible_contracts.names import Backend, Role
from crucible_gateway.paths import CeleryPath, Holding, LegacyPath, Paths, task_id_for
from crucible_gateway.paths.celery_client import CeleryDispatcher
from crucible_runtime.clients import QueueServiceClient
from crucible_runtime.pytest_plugin import free_port


class RecordingPath:
    """A stand-in path that notes what it was asked."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.dependency = f"{backend}-dependency"
        self.may_redispatch = True
        self.calls: list[tuple[str, Any]] = []

    def submit(self, task: EvalTask) -> None:
        self.calls.append(("submit", task.eval_id))

    def withdraw(self, eval_id: str, role: Role) -> None:
        self.calls.append(("withdraw", (eval_id, role)))

    def holds(self, eval_id: str, role: Role) -> Holding:
        self.calls.append(("holds", (eval_id, role)))
        return Holding(False, "recorded")

    def works_on(self, eval_id: str, role: Role) -> Holding:
        self.calls.append(("works_on", (eval_id, role)))
        return Holding(False, "recorded")

    def depth(self, *, timeout: float) -> dict[str, Any]:
        return {"backend": str(self.backend)}

    def ping(self, *, timeout: float) -> None:
        self.calls.append(("ping", timeout))

    def close(self) -> None:
        self.calls.append(("close", None))


def _task(backend: Backend, role: Role = Role.PRIMARY) -> EvalTask:
    return EvalTask(
        eval_id=new_eval_id(),
        role=role,
        backend=backend,
        program=Program(code="print(1)", language="python", timeout=10),
    )


@pytest.fixture
def recording() -> tuple[Paths, RecordingPath, RecordingPath]:
    legacy, celery = RecordingPath(Backend.LEGACY), RecordingPath(Backend.CELERY)
    return Paths(celery, legacy), legacy, celery


@pytest.mark.parametrize("backend", list(Backend))
def test_a_run_is_submitted_and_withdrawn_through_its_own_backends_path_only(recording, backend):
    paths, legacy, celery = recording
    mine, other = (legacy, celery) if backend is Backend.LEGACY else (celery, legacy)
    task = _task(backend)

    paths[backend].submit(task)
    paths[backend].withdraw(task.eval_id, Role.SHADOW)
    paths[backend].holds(task.eval_id, Role.PRIMARY)

    assert mine.calls == [
        ("submit", task.eval_id),
        ("withdraw", (task.eval_id, Role.SHADOW)),
        ("holds", (task.eval_id, Role.PRIMARY)),
    ]
    assert other.calls == []


@pytest.mark.parametrize(("backend", "other"), [("legacy", "celery"), ("celery", "legacy")])
def test_other_is_the_path_of_the_other_backend(recording, backend, other):
    paths, *_ = recording

    assert paths.other(Backend(backend)).backend is Backend(other)
    assert paths[backend].backend is Backend(backend)  # a backend's plain name works too


def test_iteration_is_in_backend_order_whatever_the_order_given(recording):
    paths, legacy, celery = recording

    assert list(paths) == [legacy, celery]
    assert len(paths) == 2


def test_close_closes_every_path(recording):
    paths, legacy, celery = recording

    paths.close()

    assert legacy.calls == celery.calls == [("close", None)]


@pytest.mark.parametrize(
    "backends",
    [[Backend.LEGACY], [Backend.CELERY], [Backend.LEGACY, Backend.LEGACY, Backend.CELERY], []],
)
def test_paths_refuses_anything_but_one_path_per_backend(backends):
    with pytest.raises(ValueError, match="one path per backend"):
        Paths(*(RecordingPath(backend) for backend in backends))


@pytest.mark.parametrize(("role", "expected"), [(Role.PRIMARY, "primary"), (Role.SHADOW, "shadow")])
def test_a_runs_task_id_is_its_eval_id_and_role(role, expected):
    eval_id = new_eval_id()

    assert task_id_for(eval_id, role) == f"{eval_id}:{expected}"


# --- the adapters over real processes ------------------------------------------------------------


@pytest.fixture
def legacy_path(own_queue_service, internal) -> LegacyPath:
    key = internal(own_queue_service.url).headers["X-Internal-Key"]
    path = LegacyPath(QueueServiceClient(own_queue_service.url, internal_key=key, timeout=10))
    yield path
    path.close()


@pytest.fixture
def celery_path(redis_server) -> CeleryPath:
    path = CeleryPath(CeleryDispatcher(redis_server.url, connect_timeout=1.0))
    yield path
    path.close()


def test_legacy_path_queues_reports_and_withdraws_a_run_from_the_deque(
    legacy_path, own_queue_service, internal
):
    task = _task(Backend.LEGACY)
    legacy_path.ping(timeout=2)

    legacy_path.submit(task)
    assert legacy_path.depth(timeout=2)["queued"] == 1
    legacy_path.withdraw(task.eval_id, task.role)

    queue = internal(own_queue_service.url)
    assert queue.get(f"/tasks/{task_id_for(task.eval_id, task.role)}").json()["state"] == (
        "cancelled"
    )
    assert legacy_path.depth(timeout=2)["queued"] == 0
    with pytest.raises(NotFound):
        legacy_path.withdraw(task.eval_id, task.role)


def test_celery_path_publishes_under_the_runs_task_id_and_reports_queue_depths(
    celery_path, broker_redis
):
    task = _task(Backend.CELERY, role=Role.SHADOW)
    celery_path.ping(timeout=2)

    celery_path.submit(task)

    depth = celery_path.depth(timeout=2)
    assert depth == {"queues": {"high": 0, "default": 0, "low": 0, "shadow": 1}, "total": 1}
    message = json.loads(broker_redis.lrange("shadow", 0, -1)[0])
    assert message["headers"]["id"] == task_id_for(task.eval_id, Role.SHADOW)
    celery_path.withdraw(task.eval_id, task.role)  # a revoke: a broadcast, nothing to read back


def test_a_path_whose_service_is_down_says_unavailable():
    url = f"http://127.0.0.1:{free_port()}"
    legacy = LegacyPath(QueueServiceClient(url, timeout=2))
    celery = CeleryPath(CeleryDispatcher(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=0.5))
    try:
        for path in (legacy, celery):
            with pytest.raises(Unavailable):
                path.ping(timeout=1)
            with pytest.raises(Unavailable):
                path.depth(timeout=1)
            with pytest.raises(Unavailable):
                path.holds(new_eval_id(), Role.PRIMARY)
    finally:
        legacy.close()
        celery.close()


def test_the_legacy_path_holds_a_run_while_queued_or_processing_and_may_send_it_again(
    legacy_path, own_queue_service, internal
):
    queued, processing, finished, unknown = (_task(Backend.LEGACY) for _ in range(4))
    for task in (processing, finished, queued):
        legacy_path.submit(task)
    queue = internal(own_queue_service.url)
    for task in (processing, finished):  # the head of the deque is leased first
        assert queue.get("/tasks/next").json()["task_id"] == task_id_for(task.eval_id, task.role)
    queue.post(f"/tasks/{task_id_for(finished.eval_id, finished.role)}/complete")

    found = {
        name: legacy_path.holds(task.eval_id, task.role)
        for name, task in [
            ("queued", queued),
            ("processing", processing),
            ("completed", finished),
            ("unknown", unknown),
        ]
    }

    assert {name: holding.held for name, holding in found.items()} == {
        "queued": True,
        "processing": True,
        "completed": False,
        "unknown": False,
    }
    assert "(queued)" in found["queued"].detail
    assert "(processing)" in found["processing"].detail
    assert "(completed)" in found["completed"].detail
    assert "no longer holds it" in found["unknown"].detail
    # A running run the queue-service has `processing` is under a lease its worker renews.
    assert legacy_path.works_on(processing.eval_id, processing.role).held
    assert not legacy_path.works_on(unknown.eval_id, unknown.role).held
    assert legacy_path.may_redispatch
    with pytest.raises(Conflict):  # the queue-service dedupes a run it holds by its task id
        legacy_path.submit(queued)
    legacy_path.submit(finished)
    assert legacy_path.holds(finished.eval_id, finished.role).held


def test_the_celery_path_may_hold_any_run_while_an_evaluation_queue_has_messages(
    celery_path, broker_redis
):
    task, other = _task(Backend.CELERY), _task(Backend.CELERY)
    broker_redis.rpush("low", "not an evaluation")
    empty = celery_path.holds(task.eval_id, task.role)

    celery_path.submit(other)
    waiting = celery_path.holds(task.eval_id, task.role)

    assert (empty.held, waiting.held) == (False, True)
    assert "1 messages still wait" in waiting.detail
    # Celery shows no sign of a worker per message: a running run past its lease is not held.
    assert not celery_path.works_on(other.eval_id, other.role).held
    # A second copy is safe: it joins the first one's run at its executor.
    assert celery_path.may_redispatch
