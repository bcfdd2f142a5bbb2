"""Celery adapters: decode the task, run the consumer procedure, map its outcome to a retry or DLQ."""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from celery import Celery, Task, signals
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from pydantic import ValidationError

from crucible_contracts.consumer import end_with_error, process
from crucible_contracts.errors import CrucibleError
from crucible_contracts.models import EvalTask
from crucible_contracts.names import (
    DEAD_LETTER_QUEUE,
    TASK_DEAD_LETTER,
    TASK_EVALUATE,
    TASK_HARD_LIMIT,
    TASK_PURGE,
    Queue,
)
from crucible_worker.config import Settings
from crucible_worker.resources import Resources
from crucible_worker.retrying import (
    GiveUp,
    Policies,
    hard_time_limit_reason,
    next_step,
    soft_time_limit_reason,
    worker_losses,
    worker_lost_reason,
)

log = logging.getLogger(__name__)


def register_tasks(app: Celery, *, settings: Settings, resources: Resources) -> None:
    """Register Crucible's tasks on `app`, by the names of crucible_contracts.names."""
    policies = Policies(busy=settings.busy_policy(), transient=settings.transient_policy())

    def give_up(task: EvalTask, reason: str, *, attempt: int) -> dict[str, Any]:
        log.warning("eval %s %s ends error: %s", task.eval_id, task.role, reason)
        try:
            end_with_error(task, reason, storage=resources.storage, attempts=attempt)
        except CrucibleError as exc:
            log.error("could not record the error of eval %s: %s", task.eval_id, exc)
        dead_letter(task.model_dump(mode="json"), reason)
        return {"eval_id": task.eval_id, "outcome": "error", "reason": reason}

    def after_soft_time_limit(
        task: EvalTask, soft_limit: float | None, *, attempt: int
    ) -> dict[str, Any]:
        killed = resources.executors.kill(task.eval_id)
        return give_up(task, soft_time_limit_reason(soft_limit, killed=killed), attempt=attempt)

    def dead_letter(task: Any, reason: str) -> None:
        app.send_task(
            TASK_DEAD_LETTER, kwargs={"task": task, "reason": reason}, queue=DEAD_LETTER_QUEUE
        )

    # max_retries=None: the retry budgets are Crucible's policies, counted in the kwargs.
    @app.task(
        name=TASK_EVALUATE,
        bind=True,
        max_retries=None,
        default_retry_delay=settings.worker_lost_retry_delay,
    )
    def evaluate_code(
        self: Task, task: dict[str, Any], busy_retries: int = 0, failures: int = 0
    ) -> dict[str, Any]:
        """Run one EvalTask to its recorded end. A program's failure is a result, never retried."""
        try:
            eval_task = EvalTask.model_validate(task)
        except ValidationError as exc:
            log.error("malformed evaluation task dropped to the dead-letter queue: %s", exc)
            dead_letter(task, f"malformed task: {exc}")
            return {"eval_id": None, "outcome": "rejected"}
        attempt = self.request.retries + 1
        losses = worker_losses(
            retries=self.request.retries, busy_retries=busy_retries, failures=failures
        )
        if losses:
            # The lost attempt's program may still be running on an executor.
            resources.executors.kill(eval_task.eval_id)
            if losses >= settings.max_worker_losses:
                return give_up(eval_task, worker_lost_reason(losses), attempt=attempt)
        try:
            result = process(
                eval_task, storage=resources.storage, executors=resources.executors, attempt=attempt
            )
        except SoftTimeLimitExceeded:
            soft_limit = (self.request.timelimit or (None, None))[1]
            return after_soft_time_limit(eval_task, soft_limit, attempt=attempt)
        except CrucibleError as exc:
            step = next_step(exc, busy_retries=busy_retries, failures=failures, policies=policies)
            if isinstance(step, GiveUp):
                return give_up(eval_task, step.reason, attempt=attempt)
            retry_kwargs = {
                "task": task,
                "busy_retries": step.busy_retries,
                "failures": step.failures,
            }
            raise self.retry(kwargs=retry_kwargs, countdown=step.countdown, exc=exc) from exc
        if result is None:
            return {"eval_id": eval_task.eval_id, "outcome": "skipped"}
        return {
            "eval_id": eval_task.eval_id,
            "outcome": result.status.value,
            "executor_id": result.executor_id,
        }

    @app.task(name=TASK_PURGE)
    def purge_old_evaluations() -> dict[str, Any]:
        """Delete evaluations older than RETENTION_DAYS from storage (run hourly by beat)."""
        older_than = settings.retention_seconds()
        deleted = resources.storage.delete_older_than(older_than)
        log.info("purged %d evaluations older than %gs", deleted, older_than)
        return {"deleted": deleted, "older_than_seconds": older_than}

    @app.task(name=TASK_DEAD_LETTER)
    def dead_letter_entry(task: Any, reason: str) -> dict[str, Any]:
        """What a worker told to drain the dead-letter queue does with an entry: log it."""
        log.warning("dead letter: %s (task %s)", reason, task)
        return {"reason": reason}

    @app.task(name=TASK_HARD_LIMIT)
    def end_after_hard_time_limit(task: dict[str, Any], reason: str) -> dict[str, Any]:
        """End `error` a run whose task was killed by its hard time limit; stop its program."""
        eval_task = EvalTask.model_validate(task)
        resources.executors.kill(eval_task.eval_id)
        view = resources.storage.get_evaluation(eval_task.eval_id)
        attempts = next((run.attempts for run in view.runs if run.role == eval_task.role), 1)
        return give_up(eval_task, reason, attempt=attempts)

    handled_timeouts: deque[str] = deque(maxlen=1000)

    def on_task_failure(
        sender: Any = None,
        task_id: str | None = None,
        exception: BaseException | None = None,
        kwargs: Any = None,
        **_: Any,
    ) -> None:
        # A hard time limit kills the pool process, so the task cannot record its own end. The
        # main process (which reports it, sometimes twice) hands that to a pool process.
        if getattr(sender, "name", None) != TASK_EVALUATE:
            return
        if not isinstance(exception, TimeLimitExceeded) or task_id in handled_timeouts:
            return
        handled_timeouts.append(task_id)
        limit = exception.args[0] if exception.args else None
        app.send_task(
            TASK_HARD_LIMIT,
            kwargs={"task": (kwargs or {}).get("task"), "reason": hard_time_limit_reason(limit)},
            queue=Queue.HIGH.value,
        )

    signals.task_failure.connect(on_task_failure, weak=False)
