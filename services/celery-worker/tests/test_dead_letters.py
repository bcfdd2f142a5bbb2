"""Every give-up of tasks.evaluate_code leaves exactly one dead letter and a run ended `error`."""

from __future__ import annotations

import pytest

from crucible_contracts.ids import new_eval_id
from crucible_contracts.models import EvalTask, Program
from crucible_contracts.names import TASK_EVALUATE, Backend, Role
from crucible_contracts.status import Status
from crucible_runtime.pytest_plugin import wait_for


def test_soft_time_limit_ends_the_run_error_with_its_reason(
    stack, storage, submit, wait_until_ended
):
    code = "import time\ntime.sleep(30)"
    # Three seconds: long enough for the program to be running at an executor when the limit
    # passes, even on a loaded machine (with one second, a slow start-up made it "no executor
    # was still running the program").
    eval_id, result = submit(
        stack.worker.client, storage, code, timeout=40, soft_time_limit=3, time_limit=15
    )

    view = wait_until_ended(storage, eval_id, timeout=25)

    assert view.status == Status.ERROR
    assert view.reason.startswith("the worker's soft time limit of 3s passed")
    assert view.reason.endswith("the program was stopped")
    wait_for(result.ready, timeout=10, what="the task result")
    assert result.state == "FAILURE"
    (entry,) = stack.worker.dead_letters(eval_id=eval_id)
    assert entry.reason == view.reason
    assert entry.attempts == 1
    assert "SoftTimeLimitExceeded" in entry.exception_type
    assert entry.first_seen_at is not None and entry.first_seen_at <= entry.failed_at


def test_hard_time_limit_ends_the_run_error_with_exactly_one_dead_letter(
    stack, storage, submit, wait_until_ended
):
    # No soft limit to handle first: the pool process is killed, as when a task is stuck; Celery
    # reports that in the worker's main process, twice.
    code = "import time\ntime.sleep(20)"
    eval_id, _ = submit(stack.worker.client, storage, code, timeout=30, time_limit=1)

    view = wait_until_ended(storage, eval_id, timeout=15)

    assert view.status == Status.ERROR
    assert view.reason == "the worker's hard time limit of 1s passed; the task was killed"
    wait_for(stack.worker.idle, what="the worker to settle")
    (entry,) = stack.worker.dead_letters(eval_id=eval_id)
    assert entry.reason == view.reason
    assert entry.attempts == 1
    assert "TimeLimitExceeded" in entry.exception_type
    assert "TimeLimitExceeded" in entry.traceback
    assert entry.kwargs["task"]["eval_id"] == eval_id


def test_unexpected_exception_in_the_task_ends_the_run_error_with_one_dead_letter(
    stack, storage, submit, wait_until_ended
):
    # A sender on another version of the contract: an argument this worker does not take.
    eval_id, result = submit(
        stack.worker.client, storage, "print('never runs')", extra_kwargs={"deadline": 5}
    )

    view = wait_until_ended(storage, eval_id)

    assert view.status == Status.ERROR
    assert view.reason.startswith("unexpected TypeError in the worker (a bug): ")
    assert "deadline" in view.reason
    wait_for(stack.worker.idle, what="the worker to settle")
    (entry,) = stack.worker.dead_letters(eval_id=eval_id)
    assert (entry.task_name, entry.task_id, entry.role) == (TASK_EVALUATE, result.id, Role.PRIMARY)
    assert entry.exception_type == "TypeError"
    assert "TypeError" in entry.traceback
    assert entry.kwargs["deadline"] == 5
    assert entry.attempts == 1
    assert result.state == "FAILURE"


def test_malformed_task_is_dead_lettered_not_retried(stack):
    result = stack.worker.client.send_task(
        TASK_EVALUATE, kwargs={"task": {"eval_id": "x"}}, queue="default"
    )

    wait_for(result.ready, timeout=10, what="the task result")
    assert result.state == "FAILURE"
    (entry,) = wait_for(
        lambda: stack.worker.dead_letters(task_id=result.id), what="a dead-letter entry"
    )
    assert entry.reason.startswith("malformed task: ")
    assert "backend: Field required" in entry.reason
    assert entry.eval_id is None  # "x" names no run
    assert entry.kwargs == {"task": {"eval_id": "x"}}
    assert entry.attempts == 1
    assert "ValidationError" in entry.exception_type


@pytest.mark.parametrize("eval_id", ["../../etc/passwd", "abc\nFAKE 2026 INFO forged", "A" * 32])
def test_task_with_a_malformed_eval_id_is_dead_lettered_as_malformed(stack, eval_id):
    program = Program(code="print(1)", language="python", timeout=5)
    task = EvalTask(eval_id=new_eval_id(), backend=Backend.CELERY, program=program).model_dump(
        mode="json"
    )
    task["eval_id"] = eval_id
    result = stack.worker.client.send_task(TASK_EVALUATE, kwargs={"task": task}, queue="default")

    wait_for(result.ready, timeout=10, what="the task result")
    assert result.state == "FAILURE"
    (entry,) = wait_for(
        lambda: stack.worker.dead_letters(task_id=result.id), what="a dead-letter entry"
    )
    assert entry.reason.startswith("malformed task: eval_id: String should match pattern")
    assert "^[0-9a-f]{32}$" in entry.reason
    assert (entry.eval_id, entry.attempts) == (None, 1)
    assert entry.kwargs == {"task": task}
    assert "ValidationError" in entry.exception_type
