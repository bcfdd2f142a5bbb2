"""tasks.evaluate_code on a real prefork worker, real storage and executor-2 / executor-3."""

from __future__ import annotations

from datetime import datetime

from crucible_contracts.models import RunUpdate
from crucible_contracts.names import Queue, Role
from crucible_contracts.status import Status
from crucible_runtime.clients import ExecutorPool
from crucible_runtime.pytest_plugin import wait_for


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


def test_each_run_goes_to_the_executor_its_eval_id_ranks_first(
    stack, storage, submit, wait_until_ended, executor_busy
):
    # Four slots per executor and two worker processes: once what earlier tests left running
    # has ended, no executor is ever full, so no run fails over and each lands where
    # ExecutorPool.preference puts it.
    for url in stack.executor_urls:
        wait_for(lambda url=url: executor_busy(url) == 0, timeout=30, what=f"{url} to be idle")
    pool = ExecutorPool(stack.executor_urls)
    eval_ids = [submit(stack.worker.client, storage, f"print({n})")[0] for n in range(20)]

    views = [wait_until_ended(storage, eval_id) for eval_id in eval_ids]

    assert {view.status for view in views} == {Status.COMPLETED}
    expected = {eval_id: pool.preference(eval_id, Role.PRIMARY)[0].base_url for eval_id in eval_ids}
    url_of = dict(zip(("executor-2", "executor-3"), stack.executor_urls, strict=True))
    assert {view.eval_id: url_of[view.executor_id] for view in views} == expected


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


def test_worker_drains_high_before_default_before_low(
    stack, storage, redis_server, celery_client, start_worker, submit, wait_until_ended
):
    # Published while no worker listens, so every queue is full when the worker starts.
    client = celery_client(redis_server.url)
    low = [submit(client, storage, "print('low')", queue=Queue.LOW)[0] for _ in range(3)]
    default = [submit(client, storage, "print('default')")[0] for _ in range(3)]
    high = [submit(client, storage, "print('high')", queue=Queue.HIGH)[0] for _ in range(3)]

    # One process: the drain order is the broker's (queue_order_strategy), and start times then
    # follow it. With two, a process could take the last `high` just as the other takes the
    # first `default` and record its start a moment later: order of starts, not of draining.
    start_worker(
        storage_url=stack.storage_url,
        executor_urls=stack.executor_urls,
        broker_url=redis_server.url,
        concurrency=1,
    )

    def started(eval_ids: list[str]) -> list[datetime]:
        return [wait_until_ended(storage, eval_id).started_at for eval_id in eval_ids]

    high_started, default_started, low_started = started(high), started(default), started(low)
    assert max(high_started) <= min(default_started)
    assert max(default_started) <= min(low_started)


def test_high_priority_evaluation_overtakes_default_work_waiting_for_a_busy_worker(
    stack, storage, start_worker, submit, wait_until_ended
):
    worker = start_worker(
        storage_url=stack.storage_url, executor_urls=stack.executor_urls, concurrency=1
    )
    busy, _ = submit(worker.client, storage, "import time\ntime.sleep(3)")
    wait_for(lambda: storage.get_evaluation(busy).status == Status.RUNNING, what="a busy worker")

    default = [submit(worker.client, storage, "print('default')")[0] for _ in range(3)]
    low = [submit(worker.client, storage, "print('low')", queue=Queue.LOW)[0] for _ in range(2)]
    shadow = [submit(worker.client, storage, "print(0)", queue=Queue.SHADOW)[0] for _ in range(2)]
    high, _ = submit(worker.client, storage, "print('high')", queue=Queue.HIGH)

    def started(eval_ids: list[str]) -> list[datetime]:
        return [wait_until_ended(storage, eval_id).started_at for eval_id in eval_ids]

    (high_started,) = started([high])
    default_started, low_started, shadow_started = started(default), started(low), started(shadow)
    assert high_started < min(default_started)
    # Maintenance and shadow work never runs while user work waits.
    assert max(default_started) < min(low_started)
    assert max(low_started) < min(shadow_started)


def test_worker_process_lost_mid_program_collects_its_run_instead_of_running_it_again(
    stack,
    storage,
    start_worker,
    start_executor,
    submit,
    wait_until_ended,
    kill_pool_process,
    retries_of,
    executor_sample,
    executor_busy,
):
    # Two executors: the retry must reach the one that runs the program (the pool's order per
    # run), which joins the run still going; the program runs once and is never killed.
    executors = [start_executor(f"executor-lost-{n}", slots=1) for n in range(2)]
    worker = start_worker(
        storage_url=stack.storage_url, executor_urls=[executor.url for executor in executors]
    )
    # Long enough that the retry (1 s after the loss) always arrives while it still runs.
    code = "import time\ntime.sleep(6)\nprint('survived')"
    eval_id, result = submit(worker.client, storage, code)
    wait_for(
        lambda: sum(executor_busy(executor.url) for executor in executors) == 1,
        what="the program to run",
    )

    kill_pool_process(worker, result.id)

    view = wait_until_ended(storage, eval_id)
    assert view.status == Status.COMPLETED
    assert view.output == "survived\n"
    assert view.attempts == 2
    (retry,) = retries_of(storage, eval_id)
    assert retry.detail["attempts"] == 2
    assert retry.detail["failure"] == "worker_lost"
    assert retry.detail["error"] == "the worker process running attempt 1 was lost"
    assert wait_for(lambda: result.ready(), timeout=10, what="the task result")
    assert result.result["outcome"] == "completed"

    def total(name: str, **labels: str) -> float:
        return sum(executor_sample(executor.url, name, **labels) for executor in executors)

    assert total("crucible_executor_runs_total", status="completed") == 1
    assert total("crucible_executor_runs_total", status="failed", reason="killed") == 0
    assert total("crucible_executor_joined_total") == 1
    assert total("crucible_executor_rejected_total") == 0
    assert worker.dead_letters() == []


def test_evaluation_whose_worker_is_lost_too_often_ends_error_in_the_dead_letter_queue(
    stack, storage, submit, wait_until_ended, kill_pool_process, retries_of
):
    # The stack's worker runs with MAX_WORKER_LOSSES=2.
    code = "import time\ntime.sleep(10)"
    eval_id, result = submit(stack.worker.client, storage, code, timeout=20)

    def attempt_runs(attempt: int) -> bool:
        view = storage.get_evaluation(eval_id)
        return view.status == Status.RUNNING and view.attempts == attempt

    wait_for(lambda: attempt_runs(1), what="the first attempt to run")
    first = kill_pool_process(stack.worker, result.id)
    wait_for(lambda: attempt_runs(2), what="the second attempt to run")
    kill_pool_process(stack.worker, result.id, after_pid=first)

    view = wait_until_ended(storage, eval_id)
    assert view.status == Status.ERROR
    assert view.reason == "the worker process running it was lost 2 times"
    assert view.attempts == 2
    assert [event.detail["failure"] for event in retries_of(storage, eval_id)] == ["worker_lost"]
    # The dead letter is parked before the run ends.
    (entry,) = stack.worker.dead_letters(eval_id=eval_id)
    assert entry.reason == view.reason
    assert entry.attempts == 2
    assert entry.task_id == result.id
    assert "GivenUp" in entry.traceback
