"""The one retry decision both consumers take after a failed attempt (`retry.next_step`).

The legacy queue-worker waits out a RetryLater in its thread and the Celery task sends itself
again with the same countdown; a GiveUp ends the run `error` with the same reason on both paths.
"""

from __future__ import annotations

import random

import pytest

from crucible_contracts.errors import Busy, Conflict, CrucibleError, InvalidInput, Unavailable
from crucible_contracts.retry import Budgets, Failure, GiveUp, RetryLater, RetryPolicy, next_step
from crucible_contracts.settings import RENAMED, RetrySettings

BUDGETS = Budgets(
    busy=RetryPolicy(max_attempts=4, base_delay=0.2, max_delay=2.0),
    transient=RetryPolicy(max_attempts=3, base_delay=1.0, max_delay=10.0),
)


def test_busy_retries_soon_and_keeps_the_failure_count():
    step = next_step(Busy("full", retry_after=1), busy_retries=0, failures=2, budgets=BUDGETS)

    assert isinstance(step, RetryLater)
    assert step.busy_retries == 1
    assert step.failures == 2
    assert step.failure is Failure.BUSY
    assert 1 <= step.countdown <= 2.0


def test_busy_countdown_is_capped_by_the_policy_even_for_a_long_retry_after():
    step = next_step(Busy("full", retry_after=60), busy_retries=0, failures=0, budgets=BUDGETS)

    assert step == RetryLater(
        countdown=2.0, busy_retries=1, failures=0, failure=Failure.BUSY, error="full"
    )


def test_busy_gives_up_when_its_own_budget_is_spent():
    step = next_step(Busy("full"), busy_retries=3, failures=0, budgets=BUDGETS)

    assert isinstance(step, GiveUp)
    assert "capacity" in step.reason


@pytest.mark.parametrize("failures", [0, 1])
def test_unavailable_backs_off_exponentially_with_jitter(failures):
    rng = random.Random(7)
    step = next_step(
        Unavailable("no executor could be reached"),
        busy_retries=5,
        failures=failures,
        budgets=BUDGETS,
        rng=rng,
    )

    ceiling = 1.0 * 2**failures
    assert isinstance(step, RetryLater)
    assert ceiling / 2 <= step.countdown <= ceiling
    assert (step.busy_retries, step.failures) == (5, failures + 1)
    assert (step.failure, step.error) == (Failure.TRANSIENT, "no executor could be reached")


def test_unavailable_gives_up_naming_the_cause_when_exhausted():
    step = next_step(
        Unavailable("no executor could be reached"),
        busy_retries=0,
        failures=2,
        budgets=BUDGETS,
    )

    assert step == GiveUp("gave up after 3 failed attempts: no executor could be reached")


@pytest.mark.parametrize(
    ("exc", "retried"),
    [
        (CrucibleError("storage answered 500"), True),
        (InvalidInput("language", "not supported"), False),
        (Conflict("run ended"), False),
    ],
)
def test_only_server_side_errors_are_retried(exc, retried):
    step = next_step(exc, busy_retries=0, failures=0, budgets=BUDGETS)

    assert isinstance(step, RetryLater) is retried


def test_an_exhausted_transient_budget_names_every_executors_error():
    exc = Unavailable("no executor could be reached", errors=["a: refused", "b: timed out"])
    step = next_step(exc, busy_retries=0, failures=2, budgets=BUDGETS)

    assert step == GiveUp(
        "gave up after 3 failed attempts: no executor could be reached (a: refused; b: timed out)"
    )


@pytest.mark.parametrize("old", ["QUEUE_BUSY_ATTEMPTS", "QUEUE_TRANSIENT_MAX_DELAY"])
def test_a_retry_setting_under_its_old_legacy_name_is_refused_naming_the_new_one(monkeypatch, old):
    monkeypatch.setenv(old, "5")
    with pytest.raises(ValueError, match=f"{old} is now {RENAMED[old]}"):
        RetrySettings()


def test_both_paths_read_the_same_retry_settings(monkeypatch):
    monkeypatch.setenv("BUSY_RETRY_MAX_ATTEMPTS", "7")
    monkeypatch.setenv("RECORD_RETRY_MAX_DELAY", "1.5")
    budgets = RetrySettings().budgets()
    assert (budgets.busy.max_attempts, budgets.record.max_delay) == (7, 1.5)
    assert RENAMED["QUEUE_BUSY_ATTEMPTS"] == "BUSY_RETRY_MAX_ATTEMPTS"
