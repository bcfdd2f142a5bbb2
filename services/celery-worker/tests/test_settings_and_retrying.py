"""Plain logic: the Celery path's retry records and reasons, its configuration, its resources.

The retry decision and records are shared with the legacy path: libs/runtime/tests/test_lifecycle.py.
"""

from __future__ import annotations

import pytest

from crucible_contracts.limits import celery_time_limits
from crucible_contracts.names import QUEUE_ORDER
from crucible_worker.celery_config import celery_config
from crucible_worker.config import Settings
from crucible_worker.resources import Resources
from crucible_worker.retrying import (
    hard_time_limit_reason,
    soft_time_limit_reason,
    worker_losses,
)


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


def test_nothing_is_scheduled_for_beat_housekeeping_is_the_gateway_leaders():
    config = celery_config(Settings())

    assert not config.get("beat_schedule")


def test_settings_split_the_executor_list_and_build_the_retry_policies():
    settings = Settings(
        executor_service_url="http://a:1/, http://b:2", transient_retry_max_attempts=2
    )

    assert settings.executor_urls() == ["http://a:1", "http://b:2"]
    assert settings.budgets().transient.max_attempts == 2


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


def test_config_has_no_dead_letter_celery_queue_and_caps_the_redis_one():
    settings = Settings()

    assert "dead_letter" not in [queue.name for queue in celery_config(settings)["task_queues"]]
    assert settings.dead_letter_max == 10_000
    assert Settings(dead_letter_max=5).dead_letter_max == 5
