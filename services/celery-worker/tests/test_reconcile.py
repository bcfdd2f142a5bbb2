"""The reconciler's decisions, as plain functions: what becomes of a run stuck in queued/running."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crucible_contracts.ids import new_eval_id
from crucible_contracts.limits import celery_time_limits
from crucible_contracts.models import Event, StuckRun
from crucible_contracts.names import Backend, EventName, Role
from crucible_contracts.status import Status
from crucible_worker.celery_config import RECONCILE_SCHEDULE_NAME, TASK_RECONCILE, celery_config
from crucible_worker.config import Settings
from crucible_worker.reconcile import (
    LOST_BY_QUEUE,
    Action,
    Rules,
    decide_celery_queued,
    decide_legacy_queued,
    decide_running,
    last_sign_of_life,
    redispatches_of,
    task_of,
)

NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)
EVAL_ID = new_eval_id()
RULES = Rules(
    legacy_queued_after=60, celery_queued_after=900, running_grace=120, max_redispatches=3
)


def stuck(status: Status = Status.QUEUED, **fields: Any) -> StuckRun:
    values: dict[str, Any] = {
        "eval_id": EVAL_ID,
        "role": Role.PRIMARY,
        "backend": Backend.LEGACY,
        "status": status,
        "created_at": NOW - timedelta(hours=1),
        "queued_at": NOW - timedelta(hours=1),
        "timeout": 30,
        "code": "print(1)",
        "language": "python",
        **fields,
    }
    return StuckRun(**values)


def event(name: EventName, at: datetime, role: Role = Role.PRIMARY, **detail: Any) -> Event:
    return Event(eval_id=EVAL_ID, event=name, role=role, status=Status.QUEUED, at=at, detail=detail)


@pytest.mark.parametrize("state", ["queued", "processing"])
def test_a_legacy_run_its_queue_still_holds_is_left_waiting(state: str) -> None:
    decision = decide_legacy_queued(stuck(), queue_state=state, redispatches=3, rules=RULES)

    assert decision.action is Action.WAITING
    assert state in decision.why


@pytest.mark.parametrize("state", [None, "completed", "failed", "cancelled"])
def test_a_legacy_run_its_queue_lost_is_enqueued_again_up_to_the_cap(state: str | None) -> None:
    first = decide_legacy_queued(stuck(), queue_state=state, redispatches=0, rules=RULES)
    last = decide_legacy_queued(stuck(), queue_state=state, redispatches=2, rules=RULES)
    beyond = decide_legacy_queued(stuck(), queue_state=state, redispatches=3, rules=RULES)

    assert (first.action, last.action) == (Action.REDISPATCHED, Action.REDISPATCHED)
    assert "(1 of 3)" in first.why and "(3 of 3)" in last.why
    assert beyond.action is Action.ENDED_ERROR
    assert "enqueued again 3 times" in beyond.why


def test_no_redispatch_at_all_when_the_cap_is_zero() -> None:
    rules = Rules(
        legacy_queued_after=60, celery_queued_after=900, running_grace=0, max_redispatches=0
    )

    decision = decide_legacy_queued(stuck(), queue_state=None, redispatches=0, rules=rules)

    assert decision.action is Action.ENDED_ERROR


@pytest.mark.parametrize(
    ("waiting", "action"),
    [(None, Action.WAITING), (5, Action.WAITING), (0, Action.ENDED_ERROR)],
)
def test_a_celery_run_queued_past_its_deadline_ends_only_once_the_queues_are_empty(
    waiting: int | None, action: Action
) -> None:
    run = stuck(backend=Backend.CELERY, queued_at=NOW - timedelta(seconds=1000))

    decision = decide_celery_queued(run, waiting_messages=waiting, now=NOW, rules=RULES)

    assert decision.action is action
    if action is Action.ENDED_ERROR:
        assert "queued on Celery for 1000s" in decision.why
        assert "lost" in decision.why


@pytest.mark.parametrize("backend", list(Backend))
@pytest.mark.parametrize(
    ("quiet", "action"),
    [
        (30 + 45 + 120, Action.WAITING),  # timeout + hard-limit margin + grace, to the second
        (30 + 45 + 121, Action.ENDED_ERROR),
    ],
)
def test_a_running_run_ends_once_silent_past_timeout_margin_and_grace(
    backend: Backend, quiet: int, action: Action
) -> None:
    run = stuck(Status.RUNNING, backend=backend, started_at=NOW - timedelta(seconds=quiet))

    decision = decide_running(run, last_sign_of_life=None, now=NOW, rules=RULES)

    assert celery_time_limits(30)[1] == 30 + 45
    assert decision.action is action
    if action is Action.ENDED_ERROR:
        assert "consumer is gone" in decision.why


def test_a_recent_retry_is_a_sign_of_life_of_a_long_running_run() -> None:
    run = stuck(Status.RUNNING, started_at=NOW - timedelta(hours=1))

    retried_lately = decide_running(
        run, last_sign_of_life=NOW - timedelta(seconds=10), now=NOW, rules=RULES
    )

    assert retried_lately.action is Action.WAITING


def test_redispatches_are_counted_from_the_runs_own_retry_records() -> None:
    events = [
        event(EventName.CREATED, NOW),
        event(EventName.RETRIED, NOW, failure=LOST_BY_QUEUE),
        event(EventName.RETRIED, NOW, failure="busy"),
        event(EventName.RETRIED, NOW, role=Role.SHADOW, failure=LOST_BY_QUEUE),
        event(EventName.RETRIED, NOW, failure=LOST_BY_QUEUE),
    ]

    assert redispatches_of(events, Role.PRIMARY) == 2
    assert redispatches_of(events, Role.SHADOW) == 1


def test_the_last_sign_of_life_is_the_newest_event_of_the_role() -> None:
    events = [
        event(EventName.STATUS_CHANGED, NOW - timedelta(minutes=5)),
        event(EventName.RETRIED, NOW - timedelta(minutes=1)),
        event(EventName.RETRIED, NOW, role=Role.SHADOW),
    ]

    assert last_sign_of_life(events, Role.PRIMARY) == NOW - timedelta(minutes=1)
    assert last_sign_of_life([], Role.PRIMARY) is None


def test_the_task_sent_again_is_the_one_the_gateway_sent() -> None:
    primary = stuck(stdin="x", memory_mb=64, priority=True)
    shadow = stuck(role=Role.SHADOW, backend=Backend.CELERY, priority=True)

    task = task_of(primary)

    assert (task.eval_id, task.role, task.backend, task.code, task.timeout) == (
        EVAL_ID,
        Role.PRIMARY,
        Backend.LEGACY,
        "print(1)",
        30,
    )
    assert (task.stdin, task.memory_mb, task.priority) == ("x", 64, True)
    assert task_of(shadow).priority is False


def test_the_running_filter_lets_no_possibly_stuck_run_through() -> None:
    # The shortest allowance is that of a zero timeout: the filter must not be stricter.
    assert RULES.running_before(NOW) == NOW - timedelta(seconds=45 + 120)
    assert (RULES.queued_after(Backend.LEGACY), RULES.queued_after(Backend.CELERY)) == (60, 900)


def test_beat_sends_the_reconciler_to_low_expiring_after_one_interval() -> None:
    config = celery_config(Settings(reconcile_interval_seconds=30))

    entry = config["beat_schedule"][RECONCILE_SCHEDULE_NAME]

    assert (entry["task"], entry["schedule"]) == (TASK_RECONCILE, 30)
    assert entry["options"] == {"queue": "low", "expires": 30}
