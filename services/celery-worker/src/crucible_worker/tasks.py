"""Celery adapters: decode the task, make one lifecycle attempt, map the next step onto Celery.

Every give-up raises GivenUp, so that Celery reports it through `task_failure` like any other
failure; failures.py turns each report into one dead letter and ends the run `error`.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded

from crucible_contracts.models import DeadLetter, ExecuteResult
from crucible_contracts.names import TASK_DEAD_LETTER, TASK_EVALUATE
from crucible_runtime import lifecycle
from crucible_runtime.dead_letters import record_give_up, run_of
from crucible_worker.config import Settings
from crucible_worker.dead_letters import attempts_recorded
from crucible_worker.delivery import Delivery
from crucible_worker.failures import connect_failure_handler
from crucible_worker.resources import Resources
from crucible_worker.retrying import soft_time_limit_reason


def register_tasks(app: Celery, *, settings: Settings, resources: Resources) -> None:
    """Register Crucible's tasks on `app`, by the names of crucible_contracts.names."""
    budgets = settings.budgets()

    def attempt(celery_task: Task, delivery: Delivery) -> dict[str, Any]:
        """One delivery: lifecycle.attempt, then lifecycle.next_step mapped onto Celery."""
        task = delivery.task
        lost = lifecycle.after_worker_loss(
            task,
            losses=delivery.losses,
            number=delivery.attempt,
            max_losses=budgets.worker_losses,
            countdown=settings.worker_lost_retry_delay,
            storage=resources.storage,
            executors=resources.executors,
        )
        if lost is not None:
            # This delivery runs nothing: the attempts were the lost ones.
            raise delivery.gave_up(lost.reason, attempts=delivery.retries)
        outcome = lifecycle.attempt(
            task,
            number=delivery.attempt,
            storage=resources.storage,
            executors=resources.executors,
            record=budgets.record,
        )
        step = lifecycle.next_step(
            outcome,
            busy_retries=delivery.busy_retries,
            failures=delivery.failures,
            budgets=budgets,
            failing_for=delivery.failing_for,
        )
        if isinstance(step, lifecycle.Done):
            return _outcome(delivery, step.result)
        cause = outcome.error if isinstance(outcome, lifecycle.Failed) else None
        if isinstance(step, lifecycle.GiveUp):
            raise delivery.gave_up(step.reason) from cause
        if not lifecycle.record_scheduled_retry(
            task, step, next_attempt=delivery.attempt + 1, storage=resources.storage
        ):
            return {"eval_id": task.eval_id, "outcome": "skipped"}
        kwargs = delivery.retry_kwargs(step)
        raise celery_task.retry(kwargs=kwargs, countdown=step.countdown, exc=cause) from cause

    # max_retries=None: the retry budgets are Crucible's policies, counted in the kwargs.
    @app.task(
        name=TASK_EVALUATE,
        bind=True,
        max_retries=None,
        default_retry_delay=settings.worker_lost_retry_delay,
    )
    def evaluate_code(
        self: Task,
        task: dict[str, Any],
        busy_retries: int = 0,
        failures: int = 0,
        first_seen_at: str | None = None,
        failing_since: str | None = None,
    ) -> dict[str, Any]:
        """Run one EvalTask to its recorded end. A program's failure is a result, never retried."""
        delivery = Delivery.decode(
            task,
            retries=self.request.retries,
            busy_retries=busy_retries,
            failures=failures,
            first_seen_at=first_seen_at,
            failing_since=failing_since,
        )
        try:
            return attempt(self, delivery)
        except SoftTimeLimitExceeded as exc:
            killed = resources.executors.kill(delivery.task.eval_id, delivery.task.role)
            soft_limit = (self.request.timelimit or (None, None))[1]
            raise delivery.gave_up(soft_time_limit_reason(soft_limit, killed=killed)) from exc

    @app.task(name=TASK_DEAD_LETTER)
    def dead_letter(entry: dict[str, Any]) -> dict[str, Any]:
        """Record a give-up Celery reported in the worker's main process (a hard time limit)."""
        dead = DeadLetter.model_validate(entry)
        task = run_of(dead.kwargs)
        if task is not None and not dead.attempts:
            attempts = attempts_recorded(task, storage=resources.storage)
            dead = dead.model_copy(update={"attempts": attempts})
        record_give_up(
            dead,
            dead_letters=resources.dead_letters,
            storage=resources.storage,
            executors=resources.executors,
            stop_program=True,
        )
        return {"id": dead.id, "eval_id": dead.eval_id, "reason": dead.reason}

    connect_failure_handler(app, resources=resources)


def _outcome(delivery: Delivery, result: ExecuteResult | None) -> dict[str, Any]:
    if result is None:
        return {"eval_id": delivery.task.eval_id, "outcome": "skipped"}
    return {
        "eval_id": delivery.task.eval_id,
        "outcome": result.status.value,
        "executor_id": result.executor_id,
    }
