"""The task_failure handler: every given-up tasks.evaluate_code becomes exactly one dead letter.

Celery reports a task's failure where it learns of it:

- in the pool process that ran the task, for anything the task raised: GivenUp (retries
  exhausted, a 4xx from our own services, the soft time limit, too many worker losses, a
  malformed task) and any unexpected exception (a bug);
- in the worker's main process, for a hard time limit (the pool process was killed; Celery
  reports it twice) and the rare failure it cannot hand back as a retry.

In a pool process the handler does the whole job at once. The main process must not wait on
HTTP (it drains the broker and supervises every pool process), so there it only publishes
`tasks.dead_letter` with the entry, already built, on the `high` queue, and a pool process
stops the program, parks the entry and ends the run. Building the entry in the main process
keeps its id, so the entry is pushed once even if that message is delivered twice.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from datetime import UTC, datetime
from typing import Any

from celery import Celery, Task, signals
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from crucible_contracts.names import TASK_DEAD_LETTER, TASK_EVALUATE, Queue
from crucible_runtime.dead_letters import record_give_up
from crucible_runtime.lifecycle import GivenUp
from crucible_worker.dead_letters import dead_letter_for, unexpected_failure_reason
from crucible_worker.resources import Resources
from crucible_worker.retrying import hard_time_limit_reason, soft_time_limit_reason

log = logging.getLogger(__name__)


def failure_reason(exception: BaseException | None) -> str:
    """The reason a run given up by `exception` ends `error` with."""
    if isinstance(exception, GivenUp):
        return exception.reason
    if isinstance(exception, TimeLimitExceeded):
        return hard_time_limit_reason(exception.args[0] if exception.args else None)
    if isinstance(exception, SoftTimeLimitExceeded):
        # Raised outside the executor call (which the task handles itself): the handler stops it.
        return soft_time_limit_reason(None, killed=True)
    if exception is None:
        return "the task failed without an exception"
    return unexpected_failure_reason(exception)


class FailureReports:
    """Remembers the requests already reported, to act once on a failure reported twice.

    Celery reports a hard time limit twice for the same request, with the same kwargs object;
    holding that object (not its id) means a later task can never be mistaken for it, even one
    with the same task id (the gateway derives task ids from the eval_id, and a replay may reuse
    one).
    """

    def __init__(self, size: int = 1000) -> None:
        self._seen: deque[tuple[str | None, Any]] = deque(maxlen=size)
        self._lock = threading.Lock()

    def first(self, task_id: str | None, kwargs: Any) -> bool:
        with self._lock:
            if any(seen_id == task_id and seen is kwargs for seen_id, seen in self._seen):
                return False
            self._seen.append((task_id, kwargs))
            return True


def connect_failure_handler(app: Celery, *, resources: Resources) -> None:
    """Connect the task_failure handler of tasks.evaluate_code for the worker of `app`."""
    in_pool_process = threading.Event()
    reports = FailureReports()

    def mark_pool_process(**_: Any) -> None:
        in_pool_process.set()

    def on_task_failure(
        sender: Task | None = None,
        task_id: str | None = None,
        exception: BaseException | None = None,
        kwargs: dict[str, Any] | None = None,
        einfo: Any = None,
        **_: Any,
    ) -> None:
        if getattr(sender, "name", None) != TASK_EVALUATE or not reports.first(task_id, kwargs):
            return
        entry = dead_letter_for(
            task_name=TASK_EVALUATE,
            task_id=task_id,
            kwargs=dict(kwargs or {}),
            exception=exception,
            traceback=getattr(einfo, "traceback", None),
            reason=failure_reason(exception),
            attempts=_attempts(sender, task_id),
            failed_at=datetime.now(UTC),
        )
        if not in_pool_process.is_set():
            # One publish to the broker, which this process talks to all the time anyway.
            app.send_task(
                TASK_DEAD_LETTER,
                kwargs={"entry": entry.model_dump(mode="json")},
                queue=Queue.HIGH.value,
            )
            return
        record_give_up(
            entry,
            dead_letters=resources.dead_letters,
            storage=resources.storage,
            executors=resources.executors,
            # The task stopped the program before giving up; after anything else it may run on.
            stop_program=not isinstance(exception, GivenUp),
        )

    signals.worker_process_init.connect(mark_pool_process, weak=False)
    signals.task_failure.connect(on_task_failure, weak=False)


def _attempts(task: Task | None, task_id: str | None) -> int:
    """Attempts of the failed delivery, from its request; 0 when Celery reported it without one
    (a hard time limit in the main process): the pool process then reads them from storage."""
    request = getattr(task, "request", None)
    if request is None or request.id != task_id or task_id is None:
        return 0
    return (request.retries or 0) + 1
