"""Plain logic of give-ups: the dead-letter entry, the reason, one report per failure, deliveries."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

import pytest
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from crucible_contracts.errors import Unavailable
from crucible_contracts.models import EvalTask, Program
from crucible_contracts.names import TASK_EVALUATE, Backend, Role
from crucible_contracts.retry import Failure
from crucible_runtime.dead_letters import run_of
from crucible_runtime.lifecycle import GivenUp, RetryLater
from crucible_worker.dead_letters import dead_letter_for
from crucible_worker.delivery import Delivery
from crucible_worker.failures import FailureReports, failure_reason

TASK = EvalTask(
    eval_id="0" * 32,
    role=Role.SHADOW,
    backend=Backend.CELERY,
    program=Program(code="print(1)", language="python", timeout=5),
).model_dump(mode="json")
NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def entry_for(exception: BaseException, kwargs: dict, *, attempts: int = 1):
    return dead_letter_for(
        task_name=TASK_EVALUATE,
        task_id="task-1",
        kwargs=kwargs,
        exception=exception,
        traceback="Traceback (most recent call last): ...",
        reason=failure_reason(exception),
        attempts=attempts,
        failed_at=NOW,
    )


def test_a_give_up_names_its_cause_and_carries_what_the_task_knew():
    first_seen = NOW - timedelta(minutes=1)
    try:
        try:
            raise Unavailable("no executor could be reached")
        except Unavailable as exc:
            raise GivenUp("gave up after 5 failed attempts", 5, first_seen) from exc
    except GivenUp as exc:
        gave_up = exc

    entry = entry_for(gave_up, {"task": TASK, "failures": 4})

    assert (entry.eval_id, entry.role, entry.backend) == ("0" * 32, Role.SHADOW, Backend.CELERY)
    assert entry.reason == "gave up after 5 failed attempts"
    assert entry.exception_type == "crucible_contracts.errors.Unavailable"
    assert entry.exception == "no executor could be reached"
    assert (entry.attempts, entry.first_seen_at, entry.failed_at) == (5, first_seen, NOW)
    assert entry.kwargs == {"task": TASK, "failures": 4}
    assert (entry.task_name, entry.task_id, entry.replays) == (TASK_EVALUATE, "task-1", 0)


def test_an_unexpected_exception_is_named_and_the_first_seen_time_read_from_the_kwargs():
    entry = entry_for(
        TypeError("bad argument"), {"task": TASK, "first_seen_at": NOW.isoformat()}, attempts=2
    )

    assert entry.reason == "unexpected TypeError in the worker (a bug): bad argument"
    assert (entry.exception_type, entry.exception) == ("TypeError", "bad argument")
    assert (entry.attempts, entry.first_seen_at) == (2, NOW)


@pytest.mark.parametrize(
    ("task", "fields"),
    [
        ({"eval_id": "x", "role": "nope"}, (None, None, None)),
        ({"eval_id": "0" * 32, "role": "nope"}, ("0" * 32, None, None)),
        ({**TASK, "eval_id": "../../etc/passwd"}, (None, Role.SHADOW, Backend.CELERY)),
        ({"eval_id": 7, "backend": "celery"}, (None, Role.PRIMARY, Backend.CELERY)),
        ("not a task", (None, None, None)),
        (None, (None, None, None)),
    ],
)
def test_a_malformed_task_keeps_what_can_be_read_of_its_run(task, fields):
    entry = entry_for(GivenUp("malformed task: ..."), {"task": task, "first_seen_at": "yesterday"})

    assert (entry.eval_id, entry.role, entry.backend) == fields
    assert entry.first_seen_at is None
    assert run_of(entry.kwargs) is None


def test_only_a_valid_task_names_a_run_to_end():
    assert run_of({"task": TASK}) == EvalTask.model_validate(TASK)
    assert run_of({}) is None


@pytest.mark.parametrize(
    ("exception", "reason"),
    [
        (GivenUp("every executor stayed at capacity"), "every executor stayed at capacity"),
        (TimeLimitExceeded(45), "the worker's hard time limit of 45s passed; the task was killed"),
        (
            SoftTimeLimitExceeded(),
            "the worker's soft time limit passed before the executor answered; "
            "the program was stopped",
        ),
        (KeyError("task"), "unexpected KeyError in the worker (a bug): 'task'"),
    ],
)
def test_every_failure_has_a_reason(exception, reason):
    assert failure_reason(exception) == reason


def test_a_failure_reported_twice_for_the_same_request_is_acted_on_once():
    reports = FailureReports()
    kwargs = {"task": TASK}

    assert reports.first("task-1", kwargs)
    assert not reports.first("task-1", kwargs)
    # Another request of the same task id (a replay) is a failure of its own.
    assert reports.first("task-1", dict(kwargs))


def test_gave_up_survives_pickling_with_its_reason():
    copy = pickle.loads(pickle.dumps(GivenUp("worker lost 3 times", 3, NOW)))

    assert isinstance(copy, GivenUp)
    assert copy.reason == "worker lost 3 times"


def test_a_malformed_task_is_given_up_naming_the_bad_fields():
    with pytest.raises(GivenUp) as raised:
        Delivery.decode({"eval_id": "x"}, retries=0, busy_retries=0, failures=0, first_seen_at=None)

    assert raised.value.reason.startswith("malformed task: ")
    assert "backend: Field required" in raised.value.reason
    assert raised.value.attempts == 1


@pytest.mark.parametrize(
    "eval_id",
    ["../../etc/passwd", "abc\nFAKE 2026 INFO forged", "0" * 33, "0" * 31, "A" * 32, " ", "é" * 32],
)
def test_a_task_with_a_malformed_eval_id_is_given_up_as_malformed(eval_id):
    with pytest.raises(GivenUp) as raised:
        Delivery.decode(
            {**TASK, "eval_id": eval_id}, retries=0, busy_retries=0, failures=0, first_seen_at=None
        )

    # Names the field and the pattern, and not the value, which may be anything.
    assert raised.value.reason == (
        "malformed task: eval_id: String should match pattern '^[0-9a-f]{32}$'"
    )
    # Nothing names a run, so nothing will be killed or ended under that id.
    assert run_of({"task": {**TASK, "eval_id": eval_id}}) is None


def test_a_retry_carries_the_counters_and_the_first_seen_time():
    delivery = Delivery.decode(
        TASK, retries=3, busy_retries=1, failures=1, first_seen_at=NOW.isoformat()
    )
    step = RetryLater(
        countdown=1, busy_retries=2, failures=1, failure=Failure.BUSY, error="every executor busy"
    )

    kwargs = delivery.retry_kwargs(step)

    assert kwargs == {
        "task": TASK,
        "busy_retries": 2,
        "failures": 1,
        "first_seen_at": NOW.isoformat(),
        "failing_since": None,
    }
    assert (delivery.attempt, delivery.losses) == (4, 1)
    assert delivery.gave_up("why").attempts == 4
    assert delivery.gave_up("why", attempts=3).first_seen_at == NOW


def test_the_transient_window_counts_from_the_first_transient_failure_across_retries():
    first = Delivery.decode(TASK, retries=0, busy_retries=0, failures=0, first_seen_at=None)
    failed = RetryLater(
        countdown=1, busy_retries=0, failures=1, failure=Failure.TRANSIENT, error="unreachable"
    )
    since = first.retry_kwargs(failed)["failing_since"]
    later = Delivery.decode(
        TASK, retries=1, busy_retries=0, failures=1, first_seen_at=None, failing_since=since
    )
    failed_again = RetryLater(
        countdown=2, busy_retries=0, failures=2, failure=Failure.TRANSIENT, error="unreachable"
    )
    ten_minutes_ago = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()
    old = Delivery.decode(
        TASK,
        retries=5,
        busy_retries=0,
        failures=4,
        first_seen_at=None,
        failing_since=ten_minutes_ago,
    )

    assert first.failing_for == 0.0
    assert later.retry_kwargs(failed_again)["failing_since"] == since
    assert 0 <= later.failing_for < 5
    assert 599 < old.failing_for < 605
    # A time without a zone (not one this worker wrote) is read as UTC, never a crash.
    naive = Delivery.decode(
        TASK,
        retries=1,
        busy_retries=0,
        failures=1,
        first_seen_at=None,
        failing_since="2020-01-01T00:00:00",
    )
    assert naive.failing_for > 0


def test_a_first_delivery_is_first_seen_now():
    before = datetime.now(UTC)

    delivery = Delivery.decode(TASK, retries=0, busy_retries=0, failures=0, first_seen_at=None)

    assert delivery.first_seen_at >= before
    assert delivery.losses == 0
