"""TaskQueue driven in-process: bounded history of finished tasks, lease expiry, idempotent acks."""

from __future__ import annotations

import threading

import pytest

from crucible_contracts.errors import Conflict, NotFound
from crucible_queue.models import TaskState
from crucible_queue.taskqueue import TaskQueue
from crucible_runtime.pytest_plugin import wait_for


def test_only_the_most_recent_finished_tasks_are_remembered(make_task):
    queue = TaskQueue(finished_keep=2)
    ids = [queue.enqueue(make_task()).task_id for _ in range(3)]
    for _ in ids:
        queue.complete(queue.next().task_id)

    with pytest.raises(NotFound):
        queue.get(ids[0])
    assert [queue.get(i).state for i in ids[1:]] == [TaskState.COMPLETED] * 2
    assert queue.status().completed == 3


def test_an_expired_lease_is_returned_on_the_next_look_at_the_queue(make_task):
    queue = TaskQueue(lease_seconds=0.05)
    queue.enqueue(make_task())
    first = queue.next()

    second = wait_for(queue.next, timeout=5, what="the lease to expire")

    assert second.task_id == first.task_id
    assert second.attempts == 2
    assert queue.status().lease_expired_total == 1


def test_fail_after_complete_conflicts_and_repeated_complete_does_not(make_task):
    queue = TaskQueue()
    queue.enqueue(make_task())
    task_id = queue.next().task_id

    queue.complete(task_id)
    assert queue.complete(task_id).state is TaskState.COMPLETED
    with pytest.raises(Conflict):
        queue.fail(task_id, "late")
    with pytest.raises(Conflict):
        queue.requeue(task_id, reason="late")


def _wait_in_thread(queue: TaskQueue, wait: float) -> tuple[threading.Thread, list]:
    got: list = []
    waiter = threading.Thread(target=lambda: got.append(queue.next(wait=wait)), daemon=True)
    waiter.start()
    return waiter, got


def test_a_long_poll_is_handed_the_task_queued_while_it_waits(make_task):
    queue = TaskQueue()
    waiter, got = _wait_in_thread(queue, wait=60)
    wait_for(lambda: queue.status().waiting_consumers == 1, timeout=10, what="the poll to wait")

    task_id = queue.enqueue(make_task()).task_id
    waiter.join(timeout=10)

    assert not waiter.is_alive()
    assert got[0] is not None and got[0].task_id == task_id
    assert queue.status().waiting_consumers == 0
    assert queue.status().processing == 1


def test_a_long_poll_also_wakes_for_a_lease_that_ran_out_meanwhile(make_task):
    queue = TaskQueue(lease_seconds=0.2)
    queue.enqueue(make_task())
    first = queue.next()
    waiter, got = _wait_in_thread(queue, wait=60)
    waiter.join(timeout=10)

    assert got[0] is not None and got[0].task_id == first.task_id
    assert got[0].attempts == 2


def test_a_long_poll_on_an_empty_queue_ends_empty_after_its_wait():
    queue = TaskQueue()
    waiter, got = _wait_in_thread(queue, wait=0.3)
    waiter.join(timeout=10)
    assert got == [None]
    assert queue.status().waiting_consumers == 0


def test_callers_past_max_waiting_are_answered_at_once(make_task):
    queue = TaskQueue(max_waiting=1)
    waiter, got = _wait_in_thread(queue, wait=60)
    wait_for(lambda: queue.status().waiting_consumers == 1, timeout=10, what="the poll to wait")

    # The second caller would wait a minute if it were allowed to: it is answered now.
    assert queue.next(wait=60) is None

    queue.enqueue(make_task())
    waiter.join(timeout=10)
    assert got[0] is not None
