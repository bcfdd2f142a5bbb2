"""tasks.evaluate_code on a real prefork worker, real storage and executor-2 / executor-3."""

from __future__ import annotations

import os
import signal
from collections import Counter
from datetime import datetime

import pytest

from crucible_contracts.models import RunUpdate
from crucible_contracts.names import TASK_EVALUATE, Queue, Role
from crucible_contracts.pytest_plugin import wait_for
from crucible_contracts.status import Status
from crucible_worker.celery_config import DEAD_LETTER_QUEUE


def test_program_output_is_recorded_as_completed(stack, storage, submit, wait_until_ended):
    eval_id, result = submit(stack.worker.client, storage, "print('hello from celery')")

    view = wait_until_ended(storage, eval_id)

    assert view.status == Status.COMPLETED
    assert view.output == "hello from celery\n"
    assert view.exit_code == 0
    assert view.executor_id in {"executor-2", "executor-3"}
    assert view.attempts == 1
    assert view.started_at is not None and view.completed_at is not None
    assert result.get(timeout=10)["outcome"] == "completed"


def test_failing_program_ends_failed_with_stderr_and_is_not_retried(
    stack, storage, submit, wait_until_ended
):
    code = "import sys\nsys.stderr.write('boom\\n')\nsys.exit(3)"
    eval_id, result = submit(stack.worker.client, storage, code)

    view = wait_until_ended(storage, eval_id)

    assert view.status == Status.FAILED
    assert view.exit_code == 3
    assert "boom" in view.error
    assert view.attempts == 1
    assert result.get(timeout=10)["outcome"] == "failed"
    assert result.state == "SUCCESS"


def test_program_over_its_time_limit_ends_timeout(stack, storage, submit, wait_until_ended):
    eval_id, _ = submit(stack.worker.client, storage, "while True:\n    pass", timeout=1)

    view = wait_until_ended(storage, eval_id)

    assert view.status == Status.TIMEOUT
    assert view.attempts == 1


def test_executors_two_and_three_share_the_work(stack, storage, submit, wait_until_ended):
    eval_ids = [submit(stack.worker.client, storage, f"print({n})")[0] for n in range(20)]

    views = [wait_until_ended(storage, eval_id) for eval_id in eval_ids]

    assert {view.status for view in views} == {Status.COMPLETED}
    counts = Counter(view.executor_id for view in views)
    assert set(counts) == {"executor-2", "executor-3"}
    assert min(counts.values()) >= 6, counts


def test_run_already_cancelled_in_storage_is_skipped(stack, storage, submit):
    def cancel(eval_id: str) -> None:
        storage.update_run(eval_id, Role.PRIMARY, RunUpdate(status=Status.CANCELLED, reason="test"))

    eval_id, result = submit(
        stack.worker.client, storage, "print('must not run')", before_send=cancel
    )

    assert result.get(timeout=20) == {"eval_id": eval_id, "outcome": "skipped"}
    view = storage.get_evaluation(eval_id)
    assert view.status == Status.CANCELLED
    assert view.executor_id is None
    assert view.output in (None, "")


def test_soft_time_limit_ends_the_run_error_with_its_reason(
    stack, storage, submit, wait_until_ended
):
    code = "import time\ntime.sleep(20)"
    eval_id, result = submit(
        stack.worker.client, storage, code, timeout=30, soft_time_limit=1, time_limit=10
    )

    view = wait_until_ended(storage, eval_id, timeout=15)

    assert view.status == Status.ERROR
    assert view.reason.startswith("the worker's soft time limit of 1s passed")
    assert view.reason.endswith("the program was stopped")
    assert result.get(timeout=10)["outcome"] == "error"


def test_hard_time_limit_ends_the_run_error_with_its_reason(
    stack, storage, submit, wait_until_ended
):
    # No soft limit to handle first: the pool process is killed, as when a task is stuck.
    code = "import time\ntime.sleep(20)"
    eval_id, _ = submit(stack.worker.client, storage, code, timeout=30, time_limit=1)

    view = wait_until_ended(storage, eval_id, timeout=15)

    assert view.status == Status.ERROR
    assert view.reason == "the worker's hard time limit of 1s passed; the task was killed"


def test_malformed_task_is_dead_lettered_not_retried(stack):
    broker = stack.worker.broker()
    before = broker.llen(DEAD_LETTER_QUEUE)

    result = stack.worker.client.send_task(
        TASK_EVALUATE, kwargs={"task": {"eval_id": "x"}}, queue="default"
    )

    assert result.get(timeout=10) == {"eval_id": None, "outcome": "rejected"}
    # The run is recorded `error` first, then parked on the dead-letter queue.
    wait_for(lambda: broker.llen(DEAD_LETTER_QUEUE) == before + 1, what="a dead-letter entry")


def test_worker_drains_high_before_default_before_low(
    stack, storage, redis_server, celery_client, start_worker, submit, wait_until_ended
):
    # Published while no worker listens, so every queue is full when the worker starts.
    client = celery_client(redis_server.url)
    low = [submit(client, storage, "print('low')", queue=Queue.LOW)[0] for _ in range(3)]
    default = [submit(client, storage, "print('default')")[0] for _ in range(3)]
    high = [submit(client, storage, "print('high')", queue=Queue.HIGH)[0] for _ in range(3)]

    start_worker(
        storage_url=stack.storage_url,
        executor_urls=stack.executor_urls,
        broker_url=redis_server.url,
    )

    def started(eval_ids: list[str]) -> list[datetime]:
        return [wait_until_ended(storage, eval_id).started_at for eval_id in eval_ids]

    high_started, default_started, low_started = started(high), started(default), started(low)
    assert max(high_started) <= min(default_started)
    assert max(default_started) <= min(low_started)


@pytest.fixture
def kill_pool_process(stack):
    """SIGKILL the worker process running a task, once it runs it (as the OOM killer would)."""
    inspect = stack.worker.client.control.inspect([stack.worker.nodename], timeout=1)

    def kill(task_id: str, *, after_pid: int | None = None) -> int:
        def pool_pid() -> int | None:
            active = (inspect.active() or {}).get(stack.worker.nodename, [])
            pids = [task["worker_pid"] for task in active if task["id"] == task_id]
            return next((pid for pid in pids if pid != after_pid), None)

        pid = wait_for(pool_pid, timeout=15, what=f"task {task_id} to run in a new process")
        os.kill(pid, signal.SIGKILL)
        return pid

    return kill


def test_worker_process_lost_mid_task_runs_the_evaluation_again(
    stack, storage, submit, wait_until_ended, kill_pool_process
):
    code = "import time\ntime.sleep(2)\nprint('survived')"
    eval_id, result = submit(stack.worker.client, storage, code)

    kill_pool_process(result.id)

    view = wait_until_ended(storage, eval_id)
    assert view.status == Status.COMPLETED
    assert view.output == "survived\n"
    assert view.attempts == 2
    assert wait_for(lambda: result.ready(), timeout=10, what="the task result")
    assert result.result["outcome"] == "completed"


def test_evaluation_whose_worker_is_lost_too_often_ends_error(
    stack, storage, submit, wait_until_ended, kill_pool_process
):
    # The stack's worker runs with MAX_WORKER_LOSSES=2.
    dead_letters = stack.worker.broker().llen(DEAD_LETTER_QUEUE)
    code = "import time\ntime.sleep(10)"
    eval_id, result = submit(stack.worker.client, storage, code, timeout=20)

    first = kill_pool_process(result.id)
    kill_pool_process(result.id, after_pid=first)

    view = wait_until_ended(storage, eval_id)
    assert view.status == Status.ERROR
    assert view.reason == "the worker process running it was lost 2 times"
    wait_for(
        lambda: stack.worker.broker().llen(DEAD_LETTER_QUEUE) == dead_letters + 1,
        what="a dead-letter entry",
    )
