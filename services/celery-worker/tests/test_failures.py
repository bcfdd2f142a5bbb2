"""Executors busy, down or unreachable: the worker skips, retries with back-off, or gives up `error`."""

from __future__ import annotations

from collections import Counter

from crucible_contracts.ids import new_eval_id
from crucible_contracts.names import Role
from crucible_contracts.status import Status
from crucible_runtime.clients import ExecutorPool
from crucible_runtime.pytest_plugin import wait_for


def ids_ranking_first(urls: list[str], first: str, count: int) -> list[str]:
    """Eval ids whose primary run asks `first` before any other executor in `urls`."""
    pool = ExecutorPool(urls)
    ids: list[str] = []
    while len(ids) < count:
        eval_id = new_eval_id()
        if pool.preference(eval_id, Role.PRIMARY)[0].base_url == first:
            ids.append(eval_id)
    return ids


def test_unreachable_executor_is_skipped(
    stack, storage, start_worker, start_executor, submit, wait_until_ended
):
    doomed = start_executor("executor-doomed")
    urls = [stack.executor_urls[0], doomed.url]
    worker = start_worker(storage_url=stack.storage_url, executor_urls=urls)
    ids = [*ids_ranking_first(urls, doomed.url, 3), *ids_ranking_first(urls, urls[0], 1)]
    first = [submit(worker.client, storage, "print('before')", eval_id=e)[0] for e in ids]
    assert {wait_until_ended(storage, e).executor_id for e in first} == {
        "executor-2",
        "executor-doomed",
    }

    doomed.stop()
    # Every one of these asks the stopped executor first.
    after = [
        submit(worker.client, storage, "print('after')", eval_id=e)[0]
        for e in ids_ranking_first(urls, doomed.url, 6)
    ]
    views = [wait_until_ended(storage, eval_id) for eval_id in after]

    assert {view.status for view in views} == {Status.COMPLETED}
    assert {view.executor_id for view in views} == {"executor-2"}
    assert {view.attempts for view in views} == {1}


def test_all_executors_unreachable_retries_with_backoff_then_ends_error(
    stack, storage, start_worker, dead_url, submit, wait_until_ended, retries_of
):
    worker = start_worker(
        storage_url=stack.storage_url,
        executor_urls=[dead_url(), dead_url()],
        TRANSIENT_RETRY_MAX_ATTEMPTS="3",
        TRANSIENT_RETRY_BASE_DELAY="0.2",
        TRANSIENT_RETRY_MAX_DELAY="0.5",
    )

    eval_id, result = submit(worker.client, storage, "print('never runs')")
    view = wait_until_ended(storage, eval_id)

    assert view.status == Status.ERROR
    assert "gave up after 3 failed attempts" in view.reason
    assert "no executor could be reached" in view.reason
    assert view.attempts == 3
    retries = retries_of(storage, eval_id)
    assert [event.detail["attempts"] for event in retries] == [2, 3]
    assert {event.detail["failure"] for event in retries} == {"transient"}
    assert {event.detail["error"] for event in retries} == {"no executor could be reached"}
    # Exponential back-off with full jitter: after failure n, within [base*2^(n-1)/2, that].
    assert 0.1 <= retries[0].detail["countdown"] <= 0.2
    assert 0.2 <= retries[1].detail["countdown"] <= 0.4
    # The dead letter is parked before the run ends.
    (entry,) = worker.dead_letters()
    assert (entry.eval_id, entry.task_id, entry.reason) == (eval_id, result.id, view.reason)
    assert entry.attempts == 3
    assert entry.exception_type == "crucible_contracts.errors.Unavailable"
    assert "Unavailable" in entry.traceback and "GivenUp" in entry.traceback
    assert entry.kwargs["failures"] == 2
    assert entry.first_seen_at is not None and entry.first_seen_at < entry.failed_at
    wait_for(result.ready, timeout=10, what="the task result")
    assert result.state == "FAILURE"


def test_busy_executor_is_retried_without_counting_as_a_failure(
    stack, storage, start_worker, start_executor, submit, wait_until_ended, retries_of
):
    single_slot = start_executor("executor-single", slots=1)
    # One transient failure would end the run `error`: only busy retries may happen here. No
    # wait in place for the slot: the retry through Celery is what this test is about.
    worker = start_worker(
        storage_url=stack.storage_url,
        executor_urls=[single_slot.url],
        TRANSIENT_RETRY_MAX_ATTEMPTS="1",
        BUSY_RETRY_BASE_DELAY="0.1",
        BUSY_RETRY_MAX_DELAY="0.5",
        EXECUTOR_BUSY_WAIT_SECONDS="0",
    )

    code = "import time\ntime.sleep(1.5)\nprint('done')"
    eval_ids = [submit(worker.client, storage, code)[0] for _ in range(2)]
    views = [wait_until_ended(storage, eval_id) for eval_id in eval_ids]

    assert [view.status for view in views] == [Status.COMPLETED, Status.COMPLETED]
    attempts = Counter(view.attempts for view in views)
    assert attempts[1] == 1, attempts
    assert max(attempts) > 1, attempts
    # A busy retry counts as an attempt, and each one is on the run's timeline.
    for view in views:
        retries = retries_of(storage, view.eval_id)
        assert [event.detail["attempts"] for event in retries] == list(range(2, view.attempts + 1))
        assert {event.detail["failure"] for event in retries} <= {"busy"}
    assert worker.dead_letters() == []


def test_a_run_that_finds_the_slots_taken_waits_for_one_in_place(
    stack, storage, start_worker, start_executor, submit, wait_until_ended, retries_of
):
    single_slot = start_executor("executor-single", slots=1)
    worker = start_worker(
        storage_url=stack.storage_url,
        executor_urls=[single_slot.url],
        TRANSIENT_RETRY_MAX_ATTEMPTS="1",
        EXECUTOR_BUSY_WAIT_SECONDS="30",
    )

    code = "import time\ntime.sleep(1.5)\nprint('done')"
    eval_ids = [submit(worker.client, storage, code)[0] for _ in range(2)]
    views = [wait_until_ended(storage, eval_id) for eval_id in eval_ids]

    # Two programs at once on one slot: the second waited for it, with no retry at all.
    assert [(view.status, view.output) for view in views] == [(Status.COMPLETED, "done\n")] * 2
    assert [view.attempts for view in views] == [1, 1]
    assert all(retries_of(storage, view.eval_id) == [] for view in views)


def test_executor_busy_through_every_retry_ends_error_in_the_dead_letter_queue(
    stack,
    storage,
    start_worker,
    start_executor,
    submit,
    wait_until_ended,
    retries_of,
    executor_busy,
):
    single_slot = start_executor("executor-full", slots=1)
    worker = start_worker(
        storage_url=stack.storage_url,
        executor_urls=[single_slot.url],
        BUSY_RETRY_MAX_ATTEMPTS="3",
        BUSY_RETRY_BASE_DELAY="0.1",
        BUSY_RETRY_MAX_DELAY="0.3",
        EXECUTOR_BUSY_WAIT_SECONDS="0",
    )
    submit(worker.client, storage, "import time\ntime.sleep(15)", timeout=20)
    wait_for(lambda: executor_busy(single_slot.url) == 1, what="the executor to be full")

    eval_id, result = submit(worker.client, storage, "print('never runs')")
    view = wait_until_ended(storage, eval_id)

    assert view.status == Status.ERROR
    assert view.reason == "every executor stayed at capacity through 3 attempts"
    assert view.attempts == 3
    retries = retries_of(storage, eval_id)
    assert [event.detail["attempts"] for event in retries] == [2, 3]
    assert {event.detail["failure"] for event in retries} == {"busy"}
    # The executor asks for 1 s (Retry-After); the busy policy caps the wait at 0.3 s.
    assert {event.detail["countdown"] for event in retries} == {0.3}
    (entry,) = worker.dead_letters(eval_id=eval_id)
    assert (entry.reason, entry.attempts, entry.task_id) == (view.reason, 3, result.id)
    assert entry.exception_type == "crucible_contracts.errors.Busy"
    assert "Busy" in entry.traceback
