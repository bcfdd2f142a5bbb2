"""TaskQueue driven in-process: bounded history of finished tasks, lease expiry, idempotent acks."""

from __future__ import annotations

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
