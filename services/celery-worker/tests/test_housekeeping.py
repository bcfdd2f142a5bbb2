"""Housekeeping: beat's purge of old evaluations and its reconciler of stuck runs, each run by a
real worker against real services; Flower on the same app, behind basic auth."""

from __future__ import annotations

import sys
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from crucible_contracts.errors import NotFound
from crucible_contracts.ids import new_eval_id
from crucible_contracts.models import EvalTask, EvaluationCreate, RunUpdate
from crucible_contracts.names import (
    INTERNAL_KEY_HEADER,
    TASK_PURGE,
    TASK_RECONCILE,
    Backend,
    EventName,
    Queue,
    Role,
)
from crucible_contracts.status import Status
from crucible_runtime.clients import StorageClient
from crucible_runtime.pytest_plugin import free_port, wait_for
from crucible_worker.flower import OPEN_WARNING, flower_environment


def _celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "crucible_worker.main:app", *args]


def test_beat_schedules_the_purge_of_old_evaluations(
    processes, start_storage, start_worker, dead_url, submit, tmp_path
):
    service, storage = start_storage()
    # Keep evaluations one second, purge every second.
    housekeeping = {"RETENTION_DAYS": str(1 / 86_400), "PURGE_INTERVAL_SECONDS": "1"}
    worker = start_worker(storage_url=service.url, executor_urls=[dead_url()], **housekeeping)

    def cancel(eval_id: str) -> None:
        storage.update_run(eval_id, Role.PRIMARY, RunUpdate(status=Status.CANCELLED))

    eval_id, _ = submit(worker.client, storage, "print('old')", before_send=cancel)
    assert storage.get_evaluation(eval_id).status == Status.CANCELLED

    beat = processes.process(
        "beat",
        _celery("beat", "--loglevel", "INFO"),
        env={
            **worker.process.env,
            **housekeeping,
            "BEAT_SCHEDULE_FILENAME": str(tmp_path / "celerybeat-schedule"),
        },
        ready=lambda m: "beat: Starting" in m.logs(),
    )

    def purged() -> bool:
        try:
            storage.get_evaluation(eval_id)
        except NotFound:
            return True
        return False

    wait_for(purged, timeout=30, what="beat's purge to delete the old evaluation")
    assert "tasks.purge_old_evaluations" in beat.logs()


def _evaluation(storage: StorageClient, backend: Backend, *, timeout: float = 5) -> str:
    eval_id = new_eval_id()
    storage.create_evaluation(
        EvaluationCreate(
            eval_id=eval_id, code="print(1)", language="python", timeout=timeout, backend=backend
        )
    )
    return eval_id


def _run(worker, task_name: str) -> dict[str, Any]:
    """Send a housekeeping task by name, as beat does, and wait for the worker's result."""
    return worker.client.send_task(task_name, queue=Queue.LOW.value).get(timeout=60)


def _headers(service) -> dict[str, str]:
    return {INTERNAL_KEY_HEADER: service.env["INTERNAL_API_KEY"]}


def test_the_purge_deletes_only_evaluations_older_than_the_retention(
    start_storage, start_worker, dead_url, backdate
):
    service, storage = start_storage()
    worker = start_worker(storage_url=service.url, executor_urls=[dead_url()], RETENTION_DAYS="30")
    now = datetime.now(UTC)
    ages = {"old": timedelta(days=31), "young": timedelta(days=29), "new": timedelta(0)}
    ids = {name: _evaluation(storage, Backend.CELERY) for name in ages}
    for name in ("old", "young"):
        backdate(ids[name], created_at=now - ages[name])

    result = _run(worker, TASK_PURGE)

    assert (result["deleted"], result["older_than_seconds"]) == (1, 30 * 86_400)
    with pytest.raises(NotFound):
        storage.get_evaluation(ids["old"])
    assert storage.get_evaluation(ids["young"]).status is Status.QUEUED
    assert storage.get_evaluation(ids["new"]).status is Status.QUEUED


def test_the_reconciler_enqueues_legacy_runs_the_queue_lost_until_the_cap(
    start_storage, start_worker, start_queue_service, dead_url, backdate, retries_of
):
    service, storage = start_storage()
    queue = start_queue_service()
    worker = start_worker(
        storage_url=service.url,
        executor_urls=[dead_url()],
        QUEUE_SERVICE_URL=queue.url,
        LEGACY_EXECUTOR_URL=dead_url(),
        RECONCILE_MAX_REDISPATCHES="1",
    )
    lost, held, fresh = (_evaluation(storage, Backend.LEGACY) for _ in range(3))
    task = EvalTask(
        eval_id=held, backend=Backend.LEGACY, code="print(1)", language="python", timeout=5
    )
    httpx.post(f"{queue.url}/tasks", json=task.model_dump(mode="json"), headers=_headers(queue))
    for eval_id in (lost, held):
        backdate(eval_id, table="runs", queued_at=datetime.now(UTC) - timedelta(minutes=2))

    def queue_state(eval_id: str) -> str:
        answer = httpx.get(f"{queue.url}/tasks/{eval_id}:primary", headers=_headers(queue))
        return answer.json()["state"] if answer.status_code == 200 else "unknown"

    first = _run(worker, TASK_RECONCILE)
    requeued = storage.get_evaluation(lost)
    (retry,) = retries_of(storage, lost)
    # The queue-service loses it again (say, another restart); the cap is one re-dispatch.
    httpx.delete(f"{queue.url}/tasks/{lost}:primary", headers=_headers(queue))
    second = _run(worker, TASK_RECONCILE)

    assert (first["checked"], first["redispatched"], first["waiting"]) == (2, 1, 1)
    assert first["runs"][0]["eval_id"] == lost
    assert (requeued.status, requeued.attempts) == (Status.QUEUED, 1)
    assert retry.detail["failure"] == "lost_by_queue"
    assert (second["ended_error"], second["waiting"]) == (1, 1)
    given_up = storage.get_evaluation(lost)
    assert given_up.status is Status.ERROR
    assert "enqueued again 1 times" in given_up.reason
    (entry,) = worker.dead_letters(eval_id=lost)
    assert entry.reason == given_up.reason
    assert entry.kwargs["task"]["backend"] == "legacy"
    assert (queue_state(held), storage.get_evaluation(held).status) == ("queued", Status.QUEUED)
    assert (queue_state(fresh), storage.get_evaluation(fresh).status) == ("unknown", Status.QUEUED)


def test_the_reconciler_ends_lost_celery_runs_and_stops_runs_whose_consumer_is_gone(
    start_storage, start_worker, start_executor, dead_url, backdate, executor_busy
):
    service, storage = start_storage()
    executor = start_executor("executor-2", slots=2)
    worker = start_worker(
        storage_url=service.url,
        executor_urls=[executor.url],
        QUEUE_SERVICE_URL=dead_url(),
        LEGACY_EXECUTOR_URL=dead_url(),
    )
    now = datetime.now(UTC)
    lost = _evaluation(storage, Backend.CELERY)
    backdate(lost, table="runs", queued_at=now - timedelta(minutes=20))
    recent = _evaluation(storage, Backend.CELERY)
    backdate(recent, table="runs", queued_at=now - timedelta(minutes=5))
    orphan, slow = (
        _evaluation(storage, Backend.LEGACY),
        _evaluation(storage, Backend.LEGACY, timeout=300),
    )
    for eval_id in (orphan, slow):
        storage.update_run(eval_id, Role.PRIMARY, RunUpdate(status=Status.RUNNING, attempts=1))
    # The orphan's consumer died while its program ran on; the slow one is within its timeout.
    for eval_id, started in (
        (orphan, now - timedelta(minutes=10)),
        (slow, now - timedelta(seconds=200)),
    ):
        backdate(eval_id, table="runs", started_at=started)
        backdate(eval_id, table="events", at=started)  # its last sign of life, too
    program: dict[str, Any] = {}
    body = {"eval_id": orphan, "code": "while True: pass", "timeout": 120}
    consumer = threading.Thread(
        target=lambda: program.update(
            httpx.post(
                f"{executor.url}/execute", json=body, headers=_headers(executor), timeout=150
            ).json()
        )
    )
    consumer.start()
    wait_for(lambda: executor_busy(executor.url) == 1, timeout=15, what="the orphan to run")

    result = _run(worker, TASK_RECONCILE)
    consumer.join(30)

    assert (result["checked"], result["ended_error"], result["waiting"]) == (3, 2, 1), result
    assert program["reason"] == "killed"
    assert executor_busy(executor.url) == 0
    ended = {eval_id: storage.get_evaluation(eval_id) for eval_id in (lost, orphan)}
    assert "its message was lost" in ended[lost].reason
    assert "consumer is gone" in ended[orphan].reason
    assert {view.status for view in ended.values()} == {Status.ERROR}
    for eval_id, view in ended.items():
        (entry,) = worker.dead_letters(eval_id=eval_id)
        assert entry.reason == view.reason
        last = storage.events(eval_id)[-1]
        assert (last.event, last.status) == (EventName.STATUS_CHANGED, Status.ERROR)
    assert storage.get_evaluation(slow).status is Status.RUNNING
    assert storage.get_evaluation(recent).status is Status.QUEUED


def _flower(processes, env: dict[str, str]) -> tuple[str, Any]:
    port = free_port()
    flower = processes.process(
        "flower",
        [sys.executable, "-m", "crucible_worker.flower", f"--port={port}", "--address=127.0.0.1"],
        env=env,
        ready=lambda _: httpx.get(f"http://127.0.0.1:{port}/healthcheck", timeout=1).is_success,
    )
    return f"http://127.0.0.1:{port}", flower


def test_flower_asks_for_the_basic_auth_credentials_of_the_environment(processes, stack):
    env = {**stack.worker.process.env, "FLOWER_BASIC_AUTH": "ops:s3cret-pass,second:other-pass"}
    url, _ = _flower(processes, env)

    anonymous = httpx.get(f"{url}/api/workers", timeout=5)
    wrong = httpx.get(f"{url}/api/workers", auth=("ops", "guess"), timeout=5)
    workers = wait_for(
        lambda: httpx.get(f"{url}/api/workers", auth=("ops", "s3cret-pass"), timeout=5).json(),
        timeout=20,
        what="flower to list the worker",
    )
    second = httpx.get(f"{url}/api/workers", auth=("second", "other-pass"), timeout=5)

    assert (anonymous.status_code, wrong.status_code, second.status_code) == (401, 401, 200)
    assert stack.worker.nodename in workers


def test_flower_without_credentials_is_open_and_says_so(processes, stack):
    env = {
        **stack.worker.process.env,
        "FLOWER_BASIC_AUTH": "",
        "FLOWER_UNAUTHENTICATED_API": "true",
    }
    url, flower = _flower(processes, env)

    workers = wait_for(
        lambda: httpx.get(f"{url}/api/workers", timeout=5).json(),
        timeout=20,
        what="flower to list the worker",
    )

    assert stack.worker.nodename in workers
    assert OPEN_WARNING in flower.logs()


@pytest.mark.parametrize(
    ("value", "environment", "outcome"),
    [
        ("ops:pw", "local", "closed"),
        ("ops:pw,second:pw2", "production", "closed"),
        ("", "local", "open"),
        ("  ", "local", "open"),
        ("", "production", "refused"),
        ("ops", "local", "refused"),
        (":pw", "local", "refused"),
        ("ops:pw,", "local", "refused"),
    ],
)
def test_flower_credentials_from_the_environment(value, environment, outcome):
    env = {"FLOWER_BASIC_AUTH": value, "ENVIRONMENT": environment, "PATH": "/usr/bin"}
    if outcome == "refused":
        with pytest.raises(ValueError, match="FLOWER_BASIC_AUTH"):
            flower_environment(env)
        return
    result, warning = flower_environment(env)
    assert result["PATH"] == "/usr/bin"
    if outcome == "closed":
        assert (result["FLOWER_BASIC_AUTH"], warning) == (value, None)
    else:
        # A blank value must not reach Flower: it would lock everyone out.
        assert ("FLOWER_BASIC_AUTH" not in result, warning) == (True, OPEN_WARNING)
