"""The queue-worker process end to end: real queue-service, storage, executor and worker processes."""

from __future__ import annotations

import signal

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from crucible_contracts.models import EvalTask, RunUpdate
from crucible_contracts.names import INTERNAL_KEY_HEADER, Backend, EventName, Role
from crucible_contracts.retry import TRANSIENT
from crucible_contracts.status import Status
from crucible_runtime.dead_letters import DeadLetterStore
from crucible_runtime.pytest_plugin import free_port, wait_for

SLOW = "import time; time.sleep({seconds}); print('done')"


def test_submitted_evaluation_ends_completed_with_its_output(
    start_queue,
    start_worker,
    shared_storage,
    shared_executor,
    storage_of,
    submit,
    wait_ended,
    queue_task,
):
    queue, storage = start_queue(), storage_of(shared_storage)
    start_worker(queue=queue.url, storage=shared_storage.url, executors=shared_executor.url)

    task = submit(storage, queue.url, "print('hello from legacy')")

    view = wait_ended(storage, task.eval_id)
    assert view.status == Status.COMPLETED
    assert view.output == "hello from legacy\n"
    assert view.exit_code == 0
    assert view.attempts == 1
    assert view.executor_id == "executor-shared"
    assert view.started_at is not None
    wait_for(lambda: queue_task(queue.url, task)["state"] == "completed", timeout=5)


def test_failing_program_ends_failed_with_its_stderr(
    start_queue,
    start_worker,
    shared_storage,
    shared_executor,
    storage_of,
    submit,
    wait_ended,
    queue_task,
):
    queue, storage = start_queue(), storage_of(shared_storage)
    start_worker(queue=queue.url, storage=shared_storage.url, executors=shared_executor.url)

    code = "import sys; sys.stderr.write('boom at line 1\\n'); sys.exit(3)"
    task = submit(storage, queue.url, code)

    view = wait_ended(storage, task.eval_id)
    assert view.status == Status.FAILED
    assert view.exit_code == 3
    assert "boom at line 1" in view.error
    # A user program's failure is the worker's success: the queue counts it completed.
    wait_for(lambda: queue_task(queue.url, task)["state"] == "completed", timeout=5)


def test_run_cancelled_in_storage_before_the_worker_takes_it_is_skipped(
    start_queue,
    start_worker,
    shared_storage,
    storage_of,
    submit,
    queue_task,
):
    queue, storage = start_queue(), storage_of(shared_storage)
    task = submit(storage, queue.url, "print('must not run')")
    storage.update_run(task.eval_id, Role.PRIMARY, RunUpdate(status=Status.CANCELLED))

    nowhere = f"http://127.0.0.1:{free_port()}"  # it must not be needed
    start_worker(queue=queue.url, storage=shared_storage.url, executors=nowhere)

    wait_for(lambda: queue_task(queue.url, task)["state"] == "completed", timeout=15)
    view = storage.get_evaluation(task.eval_id)
    assert view.status == Status.CANCELLED
    assert view.output is None
    assert view.started_at is None


@pytest.mark.parametrize("busy_wait", [0, 30], ids=["busy-retry", "waits-in-place"])
def test_busy_executor_is_waited_for_without_counting_a_failure(
    busy_wait,
    start_queue,
    start_worker,
    start_executor,
    shared_storage,
    storage_of,
    submit,
    wait_ended,
):
    queue, storage = start_queue(), storage_of(shared_storage)
    executor = start_executor(slots=1)
    metrics_port = free_port()
    start_worker(
        queue=queue.url,
        storage=shared_storage.url,
        executors=executor.url,
        transient_retry_max_attempts=1,
        queue_worker_metrics_port=metrics_port,
        executor_busy_wait_seconds=busy_wait,
    )

    tasks = [submit(storage, queue.url, SLOW.format(seconds=1)) for _ in range(2)]

    for task in tasks:
        view = wait_ended(storage, task.eval_id)
        assert view.status == Status.COMPLETED, view
        assert view.output == "done\n"
    metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
    # Without a wait in place the second run is retried later (a busy retry, not a failure);
    # with one, it waits for the slot and nothing is retried.
    busy_retried = 'crucible_legacy_worker_retries_total{cause="executor_busy"}' in metrics
    assert busy_retried == (busy_wait == 0)
    assert 'crucible_legacy_worker_tasks_total{ack="complete"} 2.0' in metrics


def test_executor_down_is_retried_and_the_run_completes_when_it_comes_back(
    processes,
    start_queue,
    start_worker,
    start_executor,
    shared_storage,
    storage_of,
    submit,
    wait_ended,
):
    queue, storage = start_queue(), storage_of(shared_storage)
    executor = start_executor()
    executor.stop()
    # The default transient budget: retried for TRANSIENT_RETRY_WINDOW_SECONDS.
    worker = start_worker(
        queue=queue.url,
        storage=shared_storage.url,
        executors=executor.url,
        transient_retry_max_attempts=TRANSIENT.max_attempts,
        transient_retry_base_delay=TRANSIENT.base_delay,
        transient_retry_max_delay=TRANSIENT.max_delay,
    )
    task = submit(storage, queue.url, "print('after the outage')")

    def retries() -> int:
        return sum(e.event is EventName.RETRIED for e in storage.events(task.eval_id))

    # Five retries (some 8 s) outlast the five attempts all there were before the window.
    wait_for(lambda: retries() >= 5, timeout=30, what="the worker to retry the executor")
    assert "executors unreachable" in worker.logs(tail=100_000)
    assert storage.get_evaluation(task.eval_id).status == Status.RUNNING

    processes.restart(executor)

    view = wait_ended(storage, task.eval_id)
    assert view.status == Status.COMPLETED
    assert view.output == "after the outage\n"


def test_executors_unreachable_for_good_end_the_run_error_with_the_cause_and_a_dead_letter(
    start_queue,
    start_worker,
    shared_storage,
    storage_of,
    submit,
    wait_ended,
    queue_task,
    redis_url,
):
    queue, storage = start_queue(), storage_of(shared_storage)
    nowhere = f"http://127.0.0.1:{free_port()}"
    start_worker(
        queue=queue.url,
        storage=shared_storage.url,
        executors=nowhere,
        dead_letter_redis_url=redis_url,
    )

    task = submit(storage, queue.url)

    view = wait_ended(storage, task.eval_id)
    assert view.status == Status.ERROR
    # The same reason as on the Celery path: one retry decision (lifecycle.next_step) for both.
    assert "gave up after 3 failed attempts" in view.reason
    failed = wait_for(
        lambda: (t := queue_task(queue.url, task))["state"] == "failed" and t, timeout=5
    )
    assert "no executor could be reached" in failed["reason"]
    # Parked like a Celery give-up: one entry naming the legacy path, so a replay goes back there.
    store = DeadLetterStore(redis.Redis.from_url(redis_url))
    entries = [e for e in store.list(limit=10_000) if e.eval_id == task.eval_id]
    assert len(entries) == 1
    (entry,) = entries
    assert (entry.backend, entry.role, entry.reason) == (Backend.LEGACY, task.role, view.reason)
    assert EvalTask.model_validate(entry.kwargs["task"]) == task


def test_storage_down_briefly_and_the_evaluation_still_ends_correctly(
    processes,
    start_queue,
    start_worker,
    start_storage,
    shared_executor,
    storage_of,
    submit,
    wait_ended,
    queue_task,
):
    queue, storage_process = start_queue(), start_storage()
    storage = storage_of(storage_process)
    task = submit(storage, queue.url, "print('stored at last')")
    storage_process.stop()

    worker = start_worker(
        queue=queue.url,
        storage=storage_process.url,
        executors=shared_executor.url,
        transient_retry_max_attempts=100,
        transient_retry_base_delay=0.1,
        transient_retry_max_delay=0.3,
    )
    wait_for(lambda: "storage unreachable" in worker.logs(), timeout=15, what="a storage retry")
    assert queue_task(queue.url, task)["state"] == "processing"

    processes.restart(storage_process)

    view = wait_ended(storage, task.eval_id)
    assert view.status == Status.COMPLETED
    assert view.output == "stored at last\n"


def test_task_delivered_too_often_ends_error_as_worker_lost(
    start_queue,
    start_worker,
    shared_storage,
    storage_of,
    submit,
    wait_ended,
    internal_key,
):
    queue, storage = start_queue(queue_lease_seconds=0.2), storage_of(shared_storage)
    task = submit(storage, queue.url, "print('never')")
    headers = {INTERNAL_KEY_HEADER: internal_key}
    with httpx.Client(base_url=queue.url, headers=headers) as client:
        for _ in range(2):  # two workers that vanish without an answer
            assert client.get("/tasks/next").status_code == 200
            wait_for(
                lambda: client.get(f"/tasks/{task.eval_id}:primary").json()["state"] == "queued",
                timeout=5,
            )

    start_worker(
        queue=queue.url,
        storage=shared_storage.url,
        executors=f"http://127.0.0.1:{free_port()}",
        max_worker_losses=2,
    )

    view = wait_ended(storage, task.eval_id)
    assert view.status == Status.ERROR
    # The same reason as on the Celery path: two workers lost it.
    assert view.reason == "the worker process running it was lost 2 times"
    assert view.output is None


def test_worker_keeps_polling_through_a_queue_service_outage(
    processes,
    start_queue,
    start_worker,
    shared_storage,
    shared_executor,
    storage_of,
    submit,
    wait_ended,
):
    queue, storage = start_queue(port=free_port()), storage_of(shared_storage)
    worker = start_worker(
        queue=queue.url,
        storage=shared_storage.url,
        executors=shared_executor.url,
        queue_poll_outage_max=0.3,
    )
    queue.stop()
    wait_for(lambda: "queue-service unavailable" in worker.logs(), timeout=10)

    processes.restart(queue)
    task = submit(storage, queue.url, "print('back')")

    assert wait_ended(storage, task.eval_id).output == "back\n"
    assert worker.alive()
    assert worker.logs(tail=100_000).count("queue-service unavailable") == 1
    assert "queue-service reachable again" in worker.logs(tail=100_000)


def test_sigterm_finishes_the_task_in_flight_takes_no_new_one_and_exits_zero(
    start_queue,
    start_worker,
    shared_storage,
    shared_executor,
    storage_of,
    submit,
    wait_ended,
    queue_task,
):
    queue, storage = start_queue(), storage_of(shared_storage)
    running = submit(storage, queue.url, SLOW.format(seconds=1.5))
    waiting = submit(storage, queue.url, "print('later')")
    worker = start_worker(
        queue=queue.url,
        storage=shared_storage.url,
        executors=shared_executor.url,
        queue_worker_concurrency=1,
    )
    wait_for(lambda: storage.get_evaluation(running.eval_id).status == Status.RUNNING)

    worker.signal(signal.SIGTERM)

    assert worker.proc.wait(timeout=20) == 0
    view = wait_ended(storage, running.eval_id, timeout=1)
    assert view.status == Status.COMPLETED
    assert view.output == "done\n"
    assert queue_task(queue.url, running)["state"] == "completed"
    assert queue_task(queue.url, waiting)["state"] == "queued"
    assert storage.get_evaluation(waiting.eval_id).status == Status.QUEUED


def test_sigterm_gives_back_a_task_still_running_after_the_grace_and_the_next_worker_joins_it(
    start_queue,
    start_worker,
    shared_storage,
    shared_executor,
    storage_of,
    submit,
    queue_task,
    wait_ended,
):
    queue, storage = start_queue(), storage_of(shared_storage)
    busy = _busy(shared_executor.url)
    task = submit(storage, queue.url, SLOW.format(seconds=4), timeout=30)
    worker = start_worker(
        queue=queue.url,
        storage=shared_storage.url,
        executors=shared_executor.url,
        queue_worker_shutdown_grace=0.3,
    )
    wait_for(lambda: storage.get_evaluation(task.eval_id).status == Status.RUNNING)
    # In a slot, not only `running` in storage: else there is nothing for the next one to join.
    wait_for(lambda: _busy(shared_executor.url) > busy, what="the program to be in a slot")
    taken_over = _taken_over(shared_executor.url)

    worker.signal(signal.SIGTERM)

    assert worker.proc.wait(timeout=15) == 0
    given_back = queue_task(queue.url, task)
    assert given_back["state"] == "queued"
    assert given_back["attempts"] == 0
    assert "still running after the shutdown grace" in worker.logs()
    # Its program was left running: the next delivery joins it (or collects its result) instead
    # of running it again.
    assert storage.get_evaluation(task.eval_id).status == Status.RUNNING
    start_worker(queue=queue.url, storage=shared_storage.url, executors=shared_executor.url)
    view = wait_ended(storage, task.eval_id)
    assert (view.status, view.output) == (Status.COMPLETED, "done\n")
    assert _taken_over(shared_executor.url) == taken_over + 1


def _taken_over(url: str) -> float:
    """Calls the executor answered with a run already going or its kept result."""
    return _sample(url, "crucible_executor_joined_total") + _sample(
        url, "crucible_executor_collected_total"
    )


def _busy(url: str) -> int:
    """How many of the executor's slots run a program now."""
    return httpx.get(f"{url}/health", timeout=5).json()["busy"]


def _sample(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


def test_a_live_worker_renews_its_lease_past_the_lease_seconds(
    start_queue,
    start_worker,
    shared_storage,
    shared_executor,
    storage_of,
    submit,
    wait_ended,
    internal_key,
):
    # A 3 s lease, renewed every second: the program outlives two leases.
    queue, storage = start_queue(queue_lease_seconds=3), storage_of(shared_storage)
    start_worker(queue=queue.url, storage=shared_storage.url, executors=shared_executor.url)
    task = submit(storage, queue.url, SLOW.format(seconds=7), timeout=30)

    view = wait_ended(storage, task.eval_id)

    assert (view.status, view.output, view.attempts) == (Status.COMPLETED, "done\n", 1)
    headers = {INTERNAL_KEY_HEADER: internal_key}
    status = httpx.get(f"{queue.url}/status", headers=headers, timeout=5).json()
    assert status["lease_expired_total"] == 0


def test_a_killed_worker_loses_its_lease_in_seconds_and_the_next_collects_the_run(
    start_queue,
    start_worker,
    shared_storage,
    shared_executor,
    storage_of,
    submit,
    wait_ended,
):
    queue, storage = start_queue(queue_lease_seconds=3), storage_of(shared_storage)
    worker = start_worker(
        queue=queue.url, storage=shared_storage.url, executors=shared_executor.url
    )
    started = _sample(shared_executor.url, "crucible_executor_runs_total")
    taken_over = _taken_over(shared_executor.url)
    busy = _busy(shared_executor.url)
    # Long enough to be still running when the worker dies, however loaded the machine.
    task = submit(storage, queue.url, SLOW.format(seconds=8), timeout=30)
    wait_for(lambda: storage.get_evaluation(task.eval_id).status == Status.RUNNING)
    # The worker records `running` before it calls the executor: killed in between, the next
    # delivery would start the program itself, and there would be nothing to take over.
    wait_for(lambda: _busy(shared_executor.url) > busy, what="the program to be in a slot")

    worker.kill()
    assert storage.get_evaluation(task.eval_id).status == Status.RUNNING
    start_worker(queue=queue.url, storage=shared_storage.url, executors=shared_executor.url)

    view = wait_ended(storage, task.eval_id)
    assert (view.status, view.output, view.attempts) == (Status.COMPLETED, "done\n", 2)
    (retry,) = [e for e in storage.events(task.eval_id) if e.event is EventName.RETRIED]
    assert retry.detail["failure"] == "worker_lost"
    # The program ran once: the second delivery joined its run or collected its result.
    assert _sample(shared_executor.url, "crucible_executor_runs_total") == started + 1
    assert _taken_over(shared_executor.url) == taken_over + 1
