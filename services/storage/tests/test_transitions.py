"""The state machine's decisions, as a pure function: every pair of statuses."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crucible_contracts.errors import Conflict, IllegalTransition
from crucible_contracts.ids import new_eval_id
from crucible_contracts.models import RunUpdate
from crucible_contracts.names import Backend, EventName, Role
from crucible_contracts.status import TERMINAL, TRANSITIONS, Status
from crucible_storage.transitions import RunState, plan_replay, plan_update

NOW = datetime(2030, 1, 1, tzinfo=UTC)
EVAL_ID = new_eval_id()
LEGAL = [(old, new) for old, targets in TRANSITIONS.items() for new in sorted(targets)]
ILLEGAL = [
    (old, new) for old in Status for new in Status if old != new and new not in TRANSITIONS[old]
]


def run_in(status: Status, *, backend: Backend = Backend.LEGACY, attempts: int = 1) -> RunState:
    return RunState(
        eval_id=EVAL_ID, role=Role.PRIMARY, status=status, backend=backend, attempts=attempts
    )


@pytest.mark.parametrize(("old", "new"), LEGAL, ids=[f"{o}->{n}" for o, n in LEGAL])
def test_legal_move_sets_the_status_and_records_one_status_event(old: Status, new: Status) -> None:
    plan = plan_update(run_in(old), RunUpdate(status=new, exit_code=0), now=NOW)

    assert plan.expected_status is old
    assert plan.values["status"] is new
    assert plan.values["exit_code"] == 0
    assert [(e.event, e.status) for e in plan.events] == [(EventName.STATUS_CHANGED, new)]
    assert ("started_at" in plan.values) == (new is Status.RUNNING)
    assert ("completed_at" in plan.values) == (new in TERMINAL)


@pytest.mark.parametrize(("old", "new"), ILLEGAL, ids=[f"{o}->{n}" for o, n in ILLEGAL])
def test_illegal_move_is_refused_naming_the_current_status(old: Status, new: Status) -> None:
    with pytest.raises(IllegalTransition) as refused:
        plan_update(run_in(old), RunUpdate(status=new), now=NOW)

    assert refused.value.details["current"] == old.value
    assert refused.value.details["requested"] == new.value


@pytest.mark.parametrize("status", sorted(TERMINAL))
def test_reporting_the_end_a_run_already_has_changes_nothing(status: Status) -> None:
    update = RunUpdate(status=status, output="late", exit_code=3, detail={"why": "duplicate"})

    assert plan_update(run_in(status), update, now=NOW).is_noop


@pytest.mark.parametrize("status", sorted(TERMINAL))
def test_changing_fields_of_an_ended_run_without_a_status_is_refused(status: Status) -> None:
    with pytest.raises(IllegalTransition) as refused:
        plan_update(run_in(status), RunUpdate(output="late"), now=NOW)

    assert refused.value.details["current"] == status.value


def test_reporting_running_again_with_more_attempts_records_a_retry() -> None:
    plan = plan_update(
        run_in(Status.RUNNING), RunUpdate(status=Status.RUNNING, attempts=2), now=NOW
    )

    assert "status" not in plan.values
    assert plan.attempts == 2
    assert [(e.event, e.detail["attempts"]) for e in plan.events] == [(EventName.RETRIED, 2)]


def test_attempts_lower_than_recorded_are_ignored() -> None:
    plan = plan_update(run_in(Status.RUNNING, attempts=3), RunUpdate(attempts=1), now=NOW)

    assert plan.is_noop


def test_backend_changes_while_queued_with_a_reroute_event() -> None:
    update = RunUpdate(backend=Backend.CELERY, detail={"why": "legacy queue down"})

    plan = plan_update(run_in(Status.QUEUED), update, now=NOW)

    assert plan.values == {"backend": Backend.CELERY}
    (event,) = plan.events
    assert event.event is EventName.REROUTED
    assert event.detail == {"from": "legacy", "to": "celery", "why": "legacy queue down"}


def test_backend_cannot_change_once_running() -> None:
    with pytest.raises(Conflict) as refused:
        plan_update(run_in(Status.RUNNING), RunUpdate(backend=Backend.CELERY), now=NOW)

    assert refused.value.details["current"] == "running"


def test_the_update_detail_goes_on_the_status_event() -> None:
    update = RunUpdate(status=Status.CANCELLED, detail={"by": "client"})

    (event,) = plan_update(run_in(Status.QUEUED), update, now=NOW).events

    assert event.detail["by"] == "client"
    assert event.detail["backend"] == "legacy"


# --- replay: the one explicit way out of a terminal state ------------------------------------------


def test_replay_plans_queued_with_the_result_cleared_and_the_attempts_kept() -> None:
    run = RunState(
        eval_id=EVAL_ID,
        role=Role.PRIMARY,
        status=Status.ERROR,
        backend=Backend.CELERY,
        attempts=4,
        replays=1,
        reason="gave up after 5 failed attempts",
    )

    plan = plan_replay(run, max_replays=3, now=NOW)

    assert plan.expected_status is Status.ERROR
    assert plan.attempts is None
    assert {key: plan.values[key] for key in ("status", "replays", "queued_at")} == {
        "status": Status.QUEUED,
        "replays": 2,
        "queued_at": NOW,
    }
    cleared = ("executor_id", "exit_code", "output", "error", "runtime_ms", "started_at")
    assert all(plan.values[key] is None for key in (*cleared, "completed_at"))
    assert plan.values["reason"].startswith("replayed (2 of 3)")
    (event,) = plan.events
    assert (event.event, event.status, event.detail["previous_reason"]) == (
        EventName.REPLAYED,
        Status.QUEUED,
        "gave up after 5 failed attempts",
    )


@pytest.mark.parametrize("status", [s for s in Status if s is not Status.ERROR])
def test_replay_of_a_run_that_did_not_end_error_is_illegal(status: Status) -> None:
    with pytest.raises(IllegalTransition) as refused:
        plan_replay(run_in(status), max_replays=3, now=NOW)

    assert refused.value.details["current"] == status.value


def test_replay_beyond_the_limit_is_a_conflict() -> None:
    run = RunState(
        eval_id=EVAL_ID,
        role=Role.PRIMARY,
        status=Status.ERROR,
        backend=Backend.LEGACY,
        attempts=1,
        replays=3,
    )

    with pytest.raises(Conflict) as refused:
        plan_replay(run, max_replays=3, now=NOW)

    assert not isinstance(refused.value, IllegalTransition)
