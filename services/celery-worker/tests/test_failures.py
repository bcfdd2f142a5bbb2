"""Executors busy, down or unreachable: the worker skips, retries with back-off, or gives up `error`."""

from __future__ import annotations

from collections import Counter

from crucible_contracts.pytest_plugin import wait_for
from crucible_contracts.status import Status
from crucible_worker.celery_config import DEAD_LETTER_QUEUE


def test_unreachable_executor_is_skipped(
    stack, storage, start_worker, start_executor, submit, wait_until_ended
):
    doomed = start_executor("executor-doomed")
    worker = start_worker(
        storage_url=stack.storage_url, executor_urls=[stack.executor_urls[0], doomed.url]
    )
    first = [submit(worker.client, storage, "print('before')")[0] for _ in range(4)]
    assert {wait_until_ended(storage, e).executor_id for e in first} == {
        "executor-2",
        "executor-doomed",
    }

    doomed.stop()
    after = [submit(worker.client, storage, "print('after')")[0] for _ in range(6)]
    views = [wait_until_ended(storage, eval_id) for eval_id in after]

    assert {view.status for view in views} == {Status.COMPLETED}
    assert {view.executor_id for view in views} == {"executor-2"}
    assert {view.attempts for view in views} == {1}


def test_all_executors_unreachable_retries_with_backoff_then_ends_error(
    stack, storage, start_worker, dead_url, submit, wait_until_ended
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
    assert result.get(timeout=10)["outcome"] == "error"
    # The run is recorded `error` first, then parked on the dead-letter queue.
    wait_for(lambda: worker.broker().llen(DEAD_LETTER_QUEUE) == 1, what="a dead-letter entry")


def test_busy_executor_is_retried_without_counting_as_a_failure(
    stack, storage, start_worker, start_executor, submit, wait_until_ended
):
    single_slot = start_executor("executor-single", slots=1)
    # One transient failure would end the run `error`: only busy retries may happen here.
    worker = start_worker(
        storage_url=stack.storage_url,
        executor_urls=[single_slot.url],
        TRANSIENT_RETRY_MAX_ATTEMPTS="1",
        BUSY_RETRY_BASE_DELAY="0.1",
        BUSY_RETRY_MAX_DELAY="0.5",
    )

    code = "import time\ntime.sleep(1.5)\nprint('done')"
    eval_ids = [submit(worker.client, storage, code)[0] for _ in range(2)]
    views = [wait_until_ended(storage, eval_id) for eval_id in eval_ids]

    assert [view.status for view in views] == [Status.COMPLETED, Status.COMPLETED]
    attempts = Counter(view.attempts for view in views)
    assert attempts[1] == 1, attempts
    assert max(attempts) > 1, attempts
