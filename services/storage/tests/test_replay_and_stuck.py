"""Replays of runs that ended `error`, and the stuck-run query the reconciler reads."""

from __future__ import annotations

from contextlib import closing
from datetime import datetime, timedelta

import pytest

from crucible_contracts.errors import Conflict, IllegalTransition, InvalidInput, NotFound
from crucible_contracts.models import Program, RunUpdate
from crucible_contracts.names import Backend, EventName, Role
from crucible_contracts.status import Status
from crucible_runtime.clients import StorageClient
from crucible_storage.tables import utcnow


def ended_error(store, *, reason: str = "executors unreachable", **fields: object) -> str:
    """A new evaluation whose primary run ran twice and ended `error` with `reason`."""
    eval_id = store.create(**fields).eval_id
    store.update(eval_id, status=Status.RUNNING, attempts=2, executor_id="executor-2")
    store.update(eval_id, status=Status.ERROR, reason=reason, output="partial", runtime_ms=5.0)
    return eval_id


# --- replay ----------------------------------------------------------------------------------------


def test_a_run_that_ended_error_goes_back_to_queued_with_its_result_cleared(shared_store) -> None:
    eval_id = ended_error(shared_store)

    run = shared_store.replay(eval_id)

    assert (run.status, run.replays, run.attempts) == (Status.QUEUED, 1, 2)
    assert (run.executor_id, run.output, run.runtime_ms) == (None, None, None)
    assert (run.started_at, run.completed_at) == (None, None)
    assert "replayed (1 of 3)" in run.reason
    assert "executors unreachable" in run.reason
    replayed = shared_store.events(eval_id)[-1]
    assert (replayed.event, replayed.status, replayed.role) == (
        EventName.REPLAYED,
        Status.QUEUED,
        Role.PRIMARY,
    )
    assert replayed.detail["replays"] == 1
    assert replayed.detail["attempts"] == 2
    assert replayed.detail["previous_reason"] == "executors unreachable"


def test_a_replayed_run_lives_on_under_the_usual_state_machine(shared_store) -> None:
    eval_id = ended_error(shared_store)
    shared_store.replay(eval_id)

    shared_store.update(eval_id, status=Status.RUNNING, attempts=3)
    done = shared_store.update(eval_id, status=Status.COMPLETED, exit_code=0, output="ok\n")

    assert (done.status, done.attempts, done.replays, done.output) == (
        Status.COMPLETED,
        3,
        1,
        "ok\n",
    )
    assert done.started_at is not None and done.completed_at is not None
    with pytest.raises(IllegalTransition):
        shared_store.update(eval_id, status=Status.QUEUED)


@pytest.mark.parametrize(
    "status", [s for s in Status if s is not Status.ERROR], ids=lambda s: s.value
)
def test_only_a_run_that_ended_error_can_be_replayed(shared_store, status: Status) -> None:
    eval_id = shared_store.create().eval_id
    shared_store.walk_to(eval_id, status)

    with pytest.raises(IllegalTransition) as refused:
        shared_store.replay(eval_id)

    assert refused.value.details["current"] == status.value
    assert shared_store.get(eval_id).status is status


def test_replays_stop_at_the_limit(shared_store) -> None:
    eval_id = ended_error(shared_store)
    for _ in range(2):
        shared_store.replay(eval_id, max_replays=2)
        shared_store.walk_to(eval_id, Status.ERROR)

    with pytest.raises(Conflict) as refused:
        shared_store.replay(eval_id, max_replays=2)

    assert refused.value.code == "conflict"
    assert refused.value.details["replays"] == 2
    assert shared_store.get(eval_id).status is Status.ERROR


def test_the_shadow_run_is_replayed_on_its_own(shared_store) -> None:
    eval_id = shared_store.create().eval_id
    shared_store.add_shadow(eval_id)
    shared_store.walk_to(eval_id, Status.ERROR, role=Role.SHADOW)

    shadow = shared_store.replay(eval_id, Role.SHADOW)

    assert (shadow.role, shadow.status, shadow.replays) == (Role.SHADOW, Status.QUEUED, 1)
    assert shared_store.get(eval_id).status is Status.QUEUED
    assert shared_store.get(eval_id).runs[0].replays == 0


def test_replay_over_http_honours_max_replays(start_storage, new_evaluation) -> None:
    storage = start_storage(MAX_REPLAYS="1")
    with closing(StorageClient(storage.url)) as client:
        eval_id = client.create_evaluation(new_evaluation()).eval_id
        with pytest.raises(IllegalTransition):
            client.replay_run(eval_id, Role.PRIMARY)
        client.update_run(eval_id, Role.PRIMARY, RunUpdate(status=Status.ERROR, reason="lost"))

        replayed = client.replay_run(eval_id, Role.PRIMARY)
        client.update_run(eval_id, Role.PRIMARY, RunUpdate(status=Status.ERROR, reason="again"))
        with pytest.raises(Conflict) as refused:
            client.replay_run(eval_id, Role.PRIMARY)
        with pytest.raises(NotFound):
            client.replay_run("0" * 32, Role.PRIMARY)

        assert (replayed.status, replayed.replays) == (Status.QUEUED, 1)
        assert refused.value.status_code == 409
        assert refused.value.details["max_replays"] == 1
        view = client.get_evaluation(eval_id)
        assert (view.status, view.runs[0].replays) == (Status.ERROR, 1)
        assert [e.event for e in client.events(eval_id)].count(EventName.REPLAYED) == 1


# --- stuck runs ------------------------------------------------------------------------------------


def in_status(store, status: Status, *, since: datetime, **fields: object) -> str:
    """An evaluation whose primary run has been in `status` (queued or running) since `since`."""
    eval_id = store.create(**fields).eval_id
    store.walk_to(eval_id, status)
    column = "started_at" if status is Status.RUNNING else "queued_at"
    store.set_run_times(eval_id, **{column: since})
    return eval_id


def test_stuck_runs_are_the_queued_and_running_ones_past_their_deadline(store) -> None:
    now = utcnow()
    old_queued = in_status(
        store, Status.QUEUED, since=now - timedelta(minutes=10), stdin="in", memory_mb=64
    )
    in_status(store, Status.QUEUED, since=now - timedelta(seconds=5))
    old_running = in_status(store, Status.RUNNING, since=now - timedelta(minutes=20))
    in_status(store, Status.RUNNING, since=now - timedelta(minutes=1))
    ended = store.create().eval_id
    store.walk_to(ended, Status.COMPLETED)
    store.set_run_times(ended, queued_at=now - timedelta(hours=1))

    stuck = store.stuck(
        queued_before=now - timedelta(minutes=1), running_before=now - timedelta(minutes=5)
    )

    assert [(run.eval_id, run.status) for run in stuck] == [
        (old_running, Status.RUNNING),
        (old_queued, Status.QUEUED),
    ]
    queued = stuck[1]
    assert (queued.role, queued.backend, queued.priority) == (Role.PRIMARY, Backend.LEGACY, False)
    assert queued.program == Program(
        code="print('hi')", language="python", timeout=5, stdin="in", memory_mb=64
    )
    assert stuck[0].started_at is not None


def test_a_replayed_run_counts_as_queued_from_its_replay(store) -> None:
    now = utcnow()
    eval_id = ended_error(store)
    store.set_run_times(eval_id, created_at=now - timedelta(days=1))
    store.replay(eval_id)

    assert store.stuck(queued_before=now - timedelta(minutes=1), running_before=now) == []
    (run,) = store.stuck(queued_before=utcnow() + timedelta(seconds=1), running_before=now)
    assert (run.eval_id, run.replays, run.created_at < run.queued_at) == (eval_id, 1, True)


def test_stuck_runs_filter_by_backend_and_limit_and_include_shadows(store) -> None:
    long_ago = utcnow() - timedelta(hours=1)
    legacy = [in_status(store, Status.QUEUED, since=long_ago) for _ in range(3)]
    celery = in_status(store, Status.QUEUED, since=long_ago, backend=Backend.CELERY)
    store.add_shadow(legacy[0], backend=Backend.CELERY)
    store.set_run_times(legacy[0], Role.SHADOW, queued_at=long_ago - timedelta(minutes=1))
    deadline = {"queued_before": utcnow(), "running_before": utcnow()}

    on_celery = store.stuck(backend=Backend.CELERY, **deadline)
    first_two = store.stuck(backend=Backend.LEGACY, limit=2, **deadline)

    assert [(run.eval_id, run.role) for run in on_celery] == [
        (legacy[0], Role.SHADOW),
        (celery, Role.PRIMARY),
    ]
    assert len(first_two) == 2 and {run.backend for run in first_two} == {Backend.LEGACY}


def test_stuck_runs_over_http_need_aware_deadlines(shared_client, new_evaluation) -> None:
    create = new_evaluation(backend=Backend.CELERY)
    eval_id = shared_client.create_evaluation(create).eval_id
    later = utcnow() + timedelta(seconds=5)

    found = shared_client.stuck_runs(
        queued_before=later, running_before=later, backend=Backend.CELERY, limit=500
    )
    deadlines = {"queued_before": later.isoformat(), "running_before": later.isoformat()}
    raw = shared_client.request("GET", "/runs/stuck", params={**deadlines, "limit": 500}).json()
    with pytest.raises(InvalidInput):
        shared_client.stuck_runs(queued_before=later.replace(tzinfo=None), running_before=later)

    assert [run.program for run in found if run.eval_id == eval_id] == [create.program]
    assert [run["program"] for run in raw if run["eval_id"] == eval_id] == [
        create.program.model_dump()
    ]
