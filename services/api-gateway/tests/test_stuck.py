"""The reconciler's decisions, as plain functions: what becomes of a run stuck in queued/running."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crucible_contracts.ids import new_eval_id
from crucible_contracts.models import Event, StuckRun
from crucible_contracts.names import Backend, EventName, Role
from crucible_contracts.status import Status
from crucible_gateway.config import Settings
from crucible_gateway.housekeeping.stuck import (
    CONSUMER_LOST,
    LOST_BY_QUEUE,
    Action,
    Rules,
    decide_queued,
    decide_running,
    last_sign_of_life,
    redispatches_of,
    task_of,
)
from crucible_gateway.paths import Holding

NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)
EVAL_ID = new_eval_id()
RULES = Rules(
    queued_after={Backend.LEGACY: 60, Backend.CELERY: 900}, running_grace=120, max_redispatches=3
)
LOST = Holding(False, "the legacy queue no longer holds it (lost in a restart?)")
UNSEEN = Holding(False, "Celery shows no worker holding it")


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


def queued(holding: Holding, *, may_redispatch: bool = True, redispatches: int = 0, **kw: Any):
    return decide_queued(
        stuck(**kw),
        holding=holding,
        may_redispatch=may_redispatch,
        redispatches=redispatches,
        now=NOW,
        rules=RULES,
    )


@pytest.mark.parametrize("may_redispatch", [True, False])
def test_a_run_its_path_still_holds_is_left_waiting_whatever_the_path(may_redispatch: bool):
    holding = Holding(True, "the legacy queue still holds it (processing)")

    decision = queued(holding, may_redispatch=may_redispatch, redispatches=3)

    assert (decision.action, decision.why) == (Action.WAITING, holding.detail)


@pytest.mark.parametrize(
    ("redispatches", "action", "said"),
    [
        (0, Action.REDISPATCHED, "enqueued again (1 of 3)"),
        (2, Action.REDISPATCHED, "enqueued again (3 of 3)"),
        (3, Action.ENDED_ERROR, "after it was enqueued again 3 times (limit 3)"),
        (7, Action.ENDED_ERROR, "after it was enqueued again 7 times (limit 3)"),
    ],
)
def test_a_lost_run_is_sent_again_up_to_the_cap_where_its_path_allows_it(
    redispatches: int, action: Action, said: str
):
    decision = queued(LOST, redispatches=redispatches)

    assert decision.action is action
    assert decision.why.startswith(LOST.detail) and said in decision.why


def test_no_redispatch_at_all_when_the_cap_is_zero():
    rules = Rules(queued_after=RULES.queued_after, running_grace=0, max_redispatches=0)

    decision = decide_queued(
        stuck(), holding=LOST, may_redispatch=True, redispatches=0, now=NOW, rules=rules
    )

    assert decision.action is Action.ENDED_ERROR


def test_a_lost_run_its_path_may_not_be_given_again_ends_at_once():
    run_age = {"backend": Backend.CELERY, "queued_at": NOW - timedelta(seconds=1000)}
    holding = Holding(False, "no Celery queue holds a message any more")

    decision = queued(holding, may_redispatch=False, redispatches=0, **run_age)

    assert decision.action is Action.ENDED_ERROR
    assert "queued on the celery path for 1000s (deadline 900s)" in decision.why
    assert "its message was lost" in decision.why and holding.detail in decision.why


def running(
    *,
    quiet: float,
    holding: Holding = UNSEEN,
    may_redispatch: bool = True,
    redispatches: int = 0,
    last_sign_of_life: datetime | None = None,
    **fields: Any,
):
    run = stuck(Status.RUNNING, started_at=NOW - timedelta(seconds=quiet), **fields)
    return decide_running(
        run,
        last_sign_of_life=last_sign_of_life,
        holding=holding,
        may_redispatch=may_redispatch,
        redispatches=redispatches,
        now=NOW,
        rules=RULES,
    )


@pytest.mark.parametrize("backend", list(Backend))
@pytest.mark.parametrize(
    ("quiet", "action"),
    [
        (30 + 120, Action.WAITING),  # timeout + grace, to the second: the lease
        (30 + 121, Action.REDISPATCHED),
    ],
)
def test_a_running_run_silent_past_its_lease_is_sent_again_to_collect_its_result(
    backend: Backend, quiet: int, action: Action
):
    decision = running(quiet=quiet, backend=backend)

    assert decision.action is action
    if action is Action.REDISPATCHED:
        assert "consumer is gone" in decision.why
        assert "sent again to collect its result (1 of 3)" in decision.why


def test_the_lease_is_sized_from_the_programs_own_timeout():
    short = running(quiet=5 + 121, timeout=5)
    long = running(quiet=5 + 121, timeout=300)

    assert (short.action, long.action) == (Action.REDISPATCHED, Action.WAITING)
    assert "lease of 125s (timeout 5s + 120s grace)" in short.why


def test_a_run_past_its_lease_that_its_path_still_delivers_is_left_waiting():
    holding = Holding(True, "the legacy queue still holds it (processing)")

    decision = running(quiet=10_000, holding=holding)

    assert decision.action is Action.WAITING
    assert decision.why.endswith(f"but {holding.detail}")


@pytest.mark.parametrize(
    ("redispatches", "may_redispatch", "action"),
    [
        (2, True, Action.REDISPATCHED),
        (3, True, Action.ENDED_ERROR),
        (0, False, Action.ENDED_ERROR),
    ],
)
def test_a_run_whose_consumers_keep_dying_ends_error_after_the_cap(
    redispatches: int, may_redispatch: bool, action: Action
):
    decision = running(quiet=10_000, redispatches=redispatches, may_redispatch=may_redispatch)

    assert decision.action is action
    if redispatches == 3:
        assert "after it was sent again 3 times (limit 3)" in decision.why


def test_a_recent_retry_is_a_sign_of_life_of_a_long_running_run():
    retried_lately = running(quiet=3600, last_sign_of_life=NOW - timedelta(seconds=10))

    assert retried_lately.action is Action.WAITING


def test_redispatches_are_counted_from_the_runs_own_retry_records():
    events = [
        event(EventName.CREATED, NOW),
        event(EventName.RETRIED, NOW, failure=LOST_BY_QUEUE),
        event(EventName.RETRIED, NOW, failure="busy"),
        event(EventName.RETRIED, NOW, role=Role.SHADOW, failure=LOST_BY_QUEUE),
        event(EventName.RETRIED, NOW, failure=CONSUMER_LOST),
        event(EventName.RETRIED, NOW, failure="worker_lost"),
    ]

    assert redispatches_of(events, Role.PRIMARY) == 2
    assert redispatches_of(events, Role.SHADOW) == 1


def test_the_last_sign_of_life_is_the_newest_event_of_the_role():
    events = [
        event(EventName.STATUS_CHANGED, NOW - timedelta(minutes=5)),
        event(EventName.RETRIED, NOW - timedelta(minutes=1)),
        event(EventName.RETRIED, NOW, role=Role.SHADOW),
    ]

    assert last_sign_of_life(events, Role.PRIMARY) == NOW - timedelta(minutes=1)
    assert last_sign_of_life([], Role.PRIMARY) is None


def test_the_task_sent_again_is_the_one_the_gateway_sent():
    primary = stuck(stdin="x", memory_mb=64, priority=True)
    shadow = stuck(role=Role.SHADOW, backend=Backend.CELERY, priority=True)

    task = task_of(primary)

    assert (task.eval_id, task.role, task.backend, task.program.code, task.program.timeout) == (
        EVAL_ID,
        Role.PRIMARY,
        Backend.LEGACY,
        "print(1)",
        30,
    )
    assert (task.program.stdin, task.program.memory_mb, task.priority) == ("x", 64, True)
    assert task_of(shadow).priority is False


def test_the_running_filter_lets_no_possibly_stuck_run_through():
    # The shortest lease is that of a zero timeout: the filter must not be stricter.
    assert RULES.running_before(NOW) == NOW - timedelta(seconds=120)


def test_the_rules_come_from_the_settings_the_beat_schedule_read():
    env = {
        "RECONCILE_QUEUED_AFTER_SECONDS": "5",
        "RECONCILE_CELERY_QUEUED_AFTER_SECONDS": "50",
        "RECONCILE_RUNNING_GRACE_SECONDS": "7",
        "RECONCILE_MAX_REDISPATCHES": "2",
        "RETENTION_DAYS": "0.5",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        settings = Settings()

    assert settings.reconcile_rules() == Rules(
        queued_after={Backend.LEGACY: 5, Backend.CELERY: 50}, running_grace=7, max_redispatches=2
    )
    assert settings.retention_seconds() == 43_200
