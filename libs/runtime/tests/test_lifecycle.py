"""The one run lifecycle both consumers follow: `lifecycle.next_step` after `lifecycle.attempt`.

One case list drives the whole decision table. The legacy queue-worker waits out a RetryLater in
its thread and the Celery task sends itself again with the same countdown; a GiveUp ends the run
`error` with the same reason on both paths, so the table holds for both. `attempt` itself is
driven against real services in the consumers' suites (queue-service test_worker.py, Celery
test_evaluate_code.py and test_failures.py).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from crucible_contracts.errors import Busy, Conflict, CrucibleError, InvalidInput, Unavailable
from crucible_contracts.models import ExecuteResult
from crucible_contracts.retry import Budgets, Failure, RetryPolicy
from crucible_contracts.settings import RENAMED, RetrySettings
from crucible_contracts.status import Status
from crucible_runtime.lifecycle import (
    Done,
    Dropped,
    Failed,
    GiveUp,
    Ran,
    RetryLater,
    Skipped,
    Stage,
    next_step,
    retry_record,
    worker_lost_reason,
)

BUDGETS = Budgets(
    busy=RetryPolicy(max_attempts=4, base_delay=0.2, max_delay=2.0, jitter=False),
    transient=RetryPolicy(
        max_attempts=3, base_delay=1.0, max_delay=10.0, jitter=False, window=30.0
    ),
)
RESULT = ExecuteResult(eval_id="e" * 32, status=Status.COMPLETED, output="hi\n")
UNREACHABLE = Unavailable("no executor could be reached", errors=["a: refused", "b: timed out"])


@dataclass(frozen=True)
class Case:
    name: str
    outcome: object
    busy_retries: int
    failures: int
    expected: object
    failing_for: float = 0.0


CASES = [
    Case("ran", Ran(RESULT), 3, 2, Done(RESULT)),
    Case("skipped: the run had already ended", Skipped(), 0, 0, Done(None)),
    Case("dropped: given back at shutdown", Dropped(RESULT), 0, 0, Done(None)),
    Case(
        "busy waits the policy's delay and keeps the failure count",
        Failed(Stage.EXECUTE, Busy("full", retry_after=0)),
        0,
        2,
        RetryLater(countdown=0.2, busy_retries=1, failures=2, failure=Failure.BUSY, error="full"),
    ),
    Case(
        "busy honours Retry-After",
        Failed(Stage.EXECUTE, Busy("full", retry_after=1)),
        1,
        0,
        RetryLater(countdown=1, busy_retries=2, failures=0, failure=Failure.BUSY, error="full"),
    ),
    Case(
        "busy caps a long Retry-After at the policy's max delay",
        Failed(Stage.EXECUTE, Busy("full", retry_after=60)),
        0,
        0,
        RetryLater(countdown=2.0, busy_retries=1, failures=0, failure=Failure.BUSY, error="full"),
    ),
    Case(
        "busy gives up when its own budget is spent",
        Failed(Stage.EXECUTE, Busy("full")),
        3,
        0,
        GiveUp("every executor stayed at capacity through 4 attempts"),
    ),
    *(
        Case(
            f"unreachable at {stage} backs off exponentially",
            Failed(stage, Unavailable("down")),
            5,
            1,
            RetryLater(
                countdown=2.0, busy_retries=5, failures=2, failure=Failure.TRANSIENT, error="down"
            ),
        )
        for stage in Stage
    ),
    Case(
        "a 5xx is retried like an outage",
        Failed(Stage.START, CrucibleError("storage answered 500")),
        0,
        0,
        RetryLater(
            countdown=1.0,
            busy_retries=0,
            failures=1,
            failure=Failure.TRANSIENT,
            error="storage answered 500",
        ),
    ),
    Case(
        "an exhausted transient budget names every executor's error",
        Failed(Stage.EXECUTE, UNREACHABLE),
        0,
        2,
        GiveUp(
            "gave up after 3 failed attempts in 0s: no executor could be reached "
            "(a: refused; b: timed out)"
        ),
    ),
    Case(
        "a transient failure within the window is retried",
        Failed(Stage.EXECUTE, UNREACHABLE),
        0,
        1,
        RetryLater(
            countdown=2.0,
            busy_retries=0,
            failures=2,
            failure=Failure.TRANSIENT,
            error="no executor could be reached",
        ),
        failing_for=28.0,
    ),
    Case(
        "a retry that would start past the window is given up, attempts left or not",
        Failed(Stage.RECORD, Unavailable("storage unreachable")),
        0,
        1,
        GiveUp("gave up after 2 failed attempts in 29s: storage unreachable"),
        failing_for=29.0,
    ),
    Case(
        "a 4xx will not change: given up at once",
        Failed(Stage.EXECUTE, InvalidInput("language", "not supported")),
        0,
        0,
        GiveUp("not retried (invalid_input): language: not supported"),
    ),
    Case(
        "a conflict from storage is not retried",
        Failed(Stage.START, Conflict("run ended")),
        0,
        0,
        GiveUp("not retried (conflict): run ended"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_next_step(case):
    step = next_step(
        case.outcome,
        busy_retries=case.busy_retries,
        failures=case.failures,
        budgets=BUDGETS,
        failing_for=case.failing_for,
    )

    assert step == case.expected


@pytest.mark.parametrize("failures", [0, 1, 4])
def test_transient_countdowns_are_jittered_within_half_of_the_ceiling(failures):
    jittered = Budgets(transient=RetryPolicy(max_attempts=9, base_delay=1.0, max_delay=10.0))
    step = next_step(
        Failed(Stage.EXECUTE, Unavailable("down")),
        busy_retries=0,
        failures=failures,
        budgets=jittered,
        rng=random.Random(7),
    )

    ceiling = min(10.0, 1.0 * 2**failures)
    assert isinstance(step, RetryLater)
    assert ceiling / 2 <= step.countdown <= ceiling


def test_a_retry_record_raises_the_attempts_and_says_why():
    update = retry_record(
        next_attempt=3, failure=Failure.TRANSIENT, error="storage answered 503", countdown=1.23456
    )

    assert update.status is None
    assert update.attempts == 3
    assert update.detail == {
        "failure": "transient",
        "error": "storage answered 503",
        "countdown": 1.235,
    }


def test_the_worker_loss_reason_is_one_sentence_for_both_paths():
    assert worker_lost_reason(2) == "the worker process running it was lost 2 times"


@pytest.mark.parametrize(
    "old", ["QUEUE_BUSY_ATTEMPTS", "QUEUE_TRANSIENT_MAX_DELAY", "QUEUE_MAX_ATTEMPTS"]
)
def test_a_retry_setting_under_its_old_legacy_name_is_refused_naming_the_new_one(monkeypatch, old):
    monkeypatch.setenv(old, "5")
    with pytest.raises(ValueError, match=f"{old} is now {RENAMED[old]}"):
        RetrySettings()


def test_both_paths_read_the_same_retry_settings(monkeypatch):
    monkeypatch.setenv("BUSY_RETRY_MAX_ATTEMPTS", "7")
    monkeypatch.setenv("RECORD_RETRY_MAX_DELAY", "1.5")
    monkeypatch.setenv("MAX_WORKER_LOSSES", "4")
    budgets = RetrySettings().budgets()
    assert (budgets.busy.max_attempts, budgets.record.max_delay) == (7, 1.5)
    assert budgets.worker_losses == 4
    assert RENAMED["QUEUE_BUSY_ATTEMPTS"] == "BUSY_RETRY_MAX_ATTEMPTS"
    assert RENAMED["QUEUE_MAX_ATTEMPTS"] == "MAX_WORKER_LOSSES"
