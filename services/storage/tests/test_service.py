"""The service layer on real SQLite and PostgreSQL databases: the state machine as stored."""

from __future__ import annotations

from datetime import timedelta

import pytest

from crucible_contracts.errors import Conflict, IllegalTransition, NotFound
from crucible_contracts.models import ComparisonOutcome, ComparisonRecord, RunCreate
from crucible_contracts.names import Backend, EventName, Role
from crucible_contracts.status import TERMINAL, TRANSITIONS, Status
from crucible_storage import hot, repository, service
from crucible_storage.tables import utcnow

LEGAL = [(old, new) for old, targets in TRANSITIONS.items() for new in sorted(targets)]
ILLEGAL = [
    (old, new) for old in Status for new in Status if old != new and new not in TRANSITIONS[old]
]


def status_events(store, eval_id: str) -> list[tuple[Role | None, Status | None]]:
    return [
        (e.role, e.status) for e in store.events(eval_id) if e.event is EventName.STATUS_CHANGED
    ]


@pytest.mark.parametrize(("old", "new"), LEGAL, ids=[f"{o}->{n}" for o, n in LEGAL])
def test_every_legal_transition_is_stored_with_its_timestamps(shared_store, old, new) -> None:
    eval_id = shared_store.create().eval_id
    shared_store.walk_to(eval_id, old)

    run = shared_store.update(eval_id, status=new, executor_id="executor-1")

    assert run.status is new
    assert run.executor_id == "executor-1"
    assert (run.started_at is not None) == (Status.RUNNING in (old, new))
    assert (run.completed_at is not None) == (new in TERMINAL)
    if run.started_at and run.completed_at:
        assert run.started_at <= run.completed_at
    assert status_events(shared_store, eval_id)[-1] == (Role.PRIMARY, new)
    assert shared_store.get(eval_id).status is new


@pytest.mark.parametrize(("old", "new"), ILLEGAL, ids=[f"{o}->{n}" for o, n in ILLEGAL])
def test_every_illegal_transition_is_refused_and_changes_nothing(shared_store, old, new) -> None:
    eval_id = shared_store.create().eval_id
    shared_store.walk_to(eval_id, old)
    before = shared_store.get(eval_id)

    with pytest.raises(IllegalTransition) as refused:
        shared_store.update(eval_id, status=new, output="should not land")

    assert refused.value.details["current"] == old.value
    assert shared_store.get(eval_id) == before


@pytest.mark.parametrize("end", sorted(TERMINAL))
def test_an_ended_run_is_final(shared_store, end: Status) -> None:
    eval_id = shared_store.create().eval_id
    shared_store.walk_to(eval_id, end)
    before = shared_store.get(eval_id)

    for other in Status:
        if other is not end:
            with pytest.raises(IllegalTransition):
                shared_store.update(eval_id, status=other)
    with pytest.raises(IllegalTransition):
        shared_store.update(eval_id, exit_code=1)

    assert shared_store.get(eval_id) == before


def test_a_duplicate_result_is_accepted_once_and_records_no_second_event(store) -> None:
    eval_id = store.create().eval_id
    store.update(eval_id, status=Status.RUNNING, attempts=1)
    result = {"status": Status.COMPLETED, "exit_code": 0, "output": "hi\n", "runtime_ms": 12.5}

    first = store.update(eval_id, **result)
    again = store.update(eval_id, **{**result, "output": "different", "runtime_ms": 99})

    assert again == first
    assert again.output == "hi\n"
    assert status_events(store, eval_id) == [
        (Role.PRIMARY, Status.RUNNING),
        (Role.PRIMARY, Status.COMPLETED),
    ]


def test_a_late_result_after_cancel_does_not_overwrite_it(store) -> None:
    eval_id = store.create().eval_id
    store.update(eval_id, status=Status.RUNNING, attempts=1)
    store.update(eval_id, status=Status.CANCELLED, reason="cancelled by client")

    with pytest.raises(IllegalTransition) as refused:
        store.update(eval_id, status=Status.COMPLETED, exit_code=0, output="done")

    assert refused.value.details["current"] == "cancelled"
    view = store.get(eval_id)
    assert (view.status, view.output, view.exit_code) == (Status.CANCELLED, None, None)
    assert view.reason == "cancelled by client"


def test_a_retry_grows_attempts_and_is_on_the_timeline(store) -> None:
    eval_id = store.create().eval_id
    store.update(eval_id, status=Status.RUNNING, attempts=1)

    retried = store.update(eval_id, status=Status.RUNNING, attempts=2, detail={"why": "lost"})
    stale = store.update(eval_id, status=Status.RUNNING, attempts=1)

    assert (retried.attempts, stale.attempts) == (2, 2)
    retries = [e for e in store.events(eval_id) if e.event is EventName.RETRIED]
    assert [(e.detail["attempts"], e.detail["why"]) for e in retries] == [(2, "lost")]


def test_a_queued_run_is_rerouted_to_the_other_backend(store) -> None:
    eval_id = store.create(backend=Backend.LEGACY).eval_id

    run = store.update(eval_id, backend=Backend.CELERY, detail={"why": "legacy queue down"})

    assert run.backend is Backend.CELERY
    assert store.get(eval_id).backend is Backend.CELERY
    (rerouted,) = [e for e in store.events(eval_id) if e.event is EventName.REROUTED]
    assert rerouted.detail == {"from": "legacy", "to": "celery", "why": "legacy queue down"}
    store.update(eval_id, status=Status.RUNNING)
    with pytest.raises(Conflict):
        store.update(eval_id, backend=Backend.LEGACY)


def test_the_timeline_is_oldest_first_with_the_update_detail(store) -> None:
    eval_id = store.create(backend=Backend.CELERY).eval_id
    store.update(eval_id, status=Status.RUNNING, executor_id="executor-2", attempts=1)
    store.update(eval_id, status=Status.FAILED, exit_code=1, detail={"signal": None, "n": 1})

    events = store.events(eval_id)

    assert [(e.event, e.status) for e in events] == [
        (EventName.CREATED, Status.QUEUED),
        (EventName.STATUS_CHANGED, Status.RUNNING),
        (EventName.STATUS_CHANGED, Status.FAILED),
    ]
    assert events[0].detail["backend"] == "celery"
    assert events[2].detail == {"backend": "celery", "exit_code": 1, "signal": None, "n": 1}
    assert [e.at for e in events] == sorted(e.at for e in events)


def test_a_shadow_run_lives_beside_the_primary(store) -> None:
    eval_id = store.create(backend=Backend.LEGACY).eval_id
    with store.database.writer() as session:
        shadow = service.add_run(
            session=session,
            publisher=store.publisher,
            eval_id=eval_id,
            run=RunCreate(role=Role.SHADOW, backend=Backend.CELERY),
        )
    store.update(eval_id, role=Role.SHADOW, status=Status.RUNNING)

    view = store.get(eval_id)

    assert (shadow.role, shadow.status) == (Role.SHADOW, Status.QUEUED)
    assert (view.status, view.backend) == (Status.QUEUED, Backend.LEGACY)
    assert [(r.role, r.backend, r.status) for r in view.runs] == [
        (Role.PRIMARY, Backend.LEGACY, Status.QUEUED),
        (Role.SHADOW, Backend.CELERY, Status.RUNNING),
    ]
    with store.database.writer() as session, pytest.raises(Conflict):
        service.add_run(
            session=session,
            publisher=store.publisher,
            eval_id=eval_id,
            run=RunCreate(role=Role.SHADOW, backend=Backend.LEGACY),
        )


def test_unknown_evaluations_and_runs_are_not_found(store) -> None:
    eval_id = store.create().eval_id

    with pytest.raises(NotFound):
        store.get("0" * 32)
    with pytest.raises(NotFound):
        store.update("0" * 32, status=Status.RUNNING)
    with pytest.raises(NotFound) as no_shadow:
        store.update(eval_id, role=Role.SHADOW, status=Status.RUNNING)
    with pytest.raises(NotFound):
        store.events("0" * 32)
    assert no_shadow.value.details == {"eval_id": eval_id, "role": "shadow"}


def test_delete_by_age_removes_only_old_evaluations_with_everything_they_own(store) -> None:
    old = [store.create().eval_id for _ in range(3)]
    young = [store.create().eval_id for _ in range(2)]
    store.walk_to(old[0], Status.COMPLETED)
    store.walk_to(old[1], Status.RUNNING)
    with store.database.writer() as session:
        for eval_id in old:
            repository.set_created_at(
                session, eval_id=eval_id, created_at=utcnow() - timedelta(hours=2)
            )
        service.record_comparison(
            session=session,
            eval_id=old[0],
            record=ComparisonRecord(outcome=ComparisonOutcome.MATCH),
        )
        session.commit()

    with store.database.writer() as session:
        deleted = service.delete_older_than(session=session, seconds=3600)

    assert deleted.deleted == 3
    for eval_id in old:
        with pytest.raises(NotFound):
            store.get(eval_id)
    assert [store.get(eval_id).eval_id for eval_id in young] == young
    with store.database.reader() as session:
        assert repository.list_events(session, eval_id=old[0]) == []
        assert repository.get_comparison(session, eval_id=old[0]) is None
        assert hot.get_run(session.connection(), eval_id=old[1], role=Role.PRIMARY) is None


def test_a_comparison_is_recorded_once(store) -> None:
    eval_id = store.create().eval_id
    first = ComparisonRecord(
        outcome=ComparisonOutcome.MISMATCH, differing_fields=["output"], details={"a": 1}
    )
    second = ComparisonRecord(outcome=ComparisonOutcome.MATCH)

    with store.database.writer() as session:
        recorded, created = service.record_comparison(
            session=session, eval_id=eval_id, record=first
        )
    with store.database.writer() as session:
        again, created_again = service.record_comparison(
            session=session, eval_id=eval_id, record=second
        )

    assert (created, created_again) == (True, False)
    assert again == recorded
    assert (again.outcome, again.differing_fields, again.details) == (
        "mismatch",
        ["output"],
        {"a": 1},
    )
