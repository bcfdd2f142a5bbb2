"""Plain logic: retry decisions, the Celery configuration, per-process resources."""

from __future__ import annotations

import random

import pytest

from crucible_contracts.errors import Busy, Conflict, CrucibleError, InvalidInput, Unavailable
from crucible_contracts.limits import celery_time_limits
from crucible_contracts.names import QUEUE_ORDER
from crucible_contracts.retry import RetryPolicy
from crucible_worker.celery_config import PURGE_SCHEDULE_NAME, TASK_PURGE, celery_config
from crucible_worker.config import Settings
from crucible_worker.resources import Resources
from crucible_worker.retrying import (
    Failure,
    GiveUp,
    Policies,
    RetryLater,
    hard_time_limit_reason,
    next_step,
    retry_record,
    soft_time_limit_reason,
    worker_losses,
)

POLICIES = Policies(
    busy=RetryPolicy(max_attempts=4, base_delay=0.2, max_delay=2.0),
    transient=RetryPolicy(max_attempts=3, base_delay=1.0, max_delay=10.0),
)


def test_busy_retries_soon_and_keeps_the_failure_count():
    step = next_step(Busy("full", retry_after=1), busy_retries=0, failures=2, policies=POLICIES)

    assert isinstance(step, RetryLater)
    assert step.busy_retries == 1
    assert step.failures == 2
    assert step.failure is Failure.BUSY
    assert 1 <= step.countdown <= 2.0


def test_busy_countdown_is_capped_by_the_policy_even_for_a_long_retry_after():
    step = next_step(Busy("full", retry_after=60), busy_retries=0, failures=0, policies=POLICIES)

    assert step == RetryLater(
        countdown=2.0, busy_retries=1, failures=0, failure=Failure.BUSY, error="full"
    )


def test_busy_gives_up_when_its_own_budget_is_spent():
    step = next_step(Busy("full"), busy_retries=3, failures=0, policies=POLICIES)

    assert isinstance(step, GiveUp)
    assert "capacity" in step.reason


@pytest.mark.parametrize("failures", [0, 1])
def test_unavailable_backs_off_exponentially_with_jitter(failures):
    rng = random.Random(7)
    step = next_step(
        Unavailable("no executor could be reached"),
        busy_retries=5,
        failures=failures,
        policies=POLICIES,
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
        policies=POLICIES,
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
    step = next_step(exc, busy_retries=0, failures=0, policies=POLICIES)

    assert isinstance(step, RetryLater) is retried


def test_config_declares_the_queues_in_drain_order_with_safe_redis_settings():
    config = celery_config(Settings())

    assert [queue.name for queue in config["task_queues"]] == [q.value for q in QUEUE_ORDER]
    assert config["task_default_queue"] == "default"
    assert config["accept_content"] == ["json"]
    assert config["task_acks_late"] and config["task_reject_on_worker_lost"]
    assert config["worker_prefetch_multiplier"] == 1
    assert config["broker_transport_options"]["queue_order_strategy"] == "priority"


def test_visibility_timeout_outlasts_the_longest_task_and_retry_delay():
    settings = Settings()
    hard_limit = celery_time_limits(300)[1]
    longest_delay = max(settings.busy_retry_max_delay, settings.transient_retry_max_delay)

    visibility = celery_config(settings)["broker_transport_options"]["visibility_timeout"]

    assert visibility > hard_limit + longest_delay


def test_purge_is_scheduled_hourly_and_expires_instead_of_piling_up():
    entry = celery_config(Settings())["beat_schedule"][PURGE_SCHEDULE_NAME]

    assert entry["task"] == TASK_PURGE
    assert entry["schedule"] == 3600
    assert entry["options"]["expires"] == 3600


def test_settings_split_the_executor_list_and_build_the_retry_policies():
    settings = Settings(
        executor_service_url="http://a:1/, http://b:2", transient_retry_max_attempts=2
    )

    assert settings.executor_urls() == ["http://a:1", "http://b:2"]
    assert settings.transient_policy().max_attempts == 2
    assert settings.retention_seconds() == 30 * 86_400


def test_resources_are_created_once_and_recreated_after_close():
    resources = Resources(Settings())

    storage, executors = resources.storage, resources.executors
    assert resources.storage is storage and resources.executors is executors
    resources.close()
    assert resources.storage is not storage
    resources.close()


@pytest.mark.parametrize(
    ("killed", "ending"),
    [(True, "the program was stopped"), (False, "no executor was still running the program")],
)
def test_soft_time_limit_reason_names_the_limit_and_what_became_of_the_program(killed, ending):
    reason = soft_time_limit_reason(31.5, killed=killed)

    assert reason.startswith("the worker's soft time limit of 31.5s passed")
    assert reason.endswith(ending)


@pytest.mark.parametrize(
    ("retries", "busy_retries", "failures", "losses"),
    [(0, 0, 0, 0), (3, 2, 1, 0), (4, 2, 1, 1), (2, 0, 0, 2)],
)
def test_worker_losses_are_the_retries_the_task_did_not_ask_for(
    retries, busy_retries, failures, losses
):
    assert worker_losses(retries=retries, busy_retries=busy_retries, failures=failures) == losses


def test_hard_time_limit_reason_names_the_limit():
    assert hard_time_limit_reason(345) == (
        "the worker's hard time limit of 345s passed; the task was killed"
    )


def test_only_the_hard_time_limit_has_an_app_default_so_a_hard_kill_is_always_possible():
    config = celery_config(Settings())

    assert config["task_time_limit"] == celery_time_limits(300)[1]
    assert "task_soft_time_limit" not in config


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


def test_config_has_no_dead_letter_celery_queue_and_caps_the_redis_one():
    settings = Settings()

    assert "dead_letter" not in [queue.name for queue in celery_config(settings)["task_queues"]]
    assert settings.dead_letter_max == 10_000
    assert Settings(dead_letter_max=5).dead_letter_max == 5
