"""One delivery of tasks.evaluate_code, without Celery: its counters, worker losses, retry records."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from crucible_contracts.errors import Conflict, CrucibleError
from crucible_contracts.models import EvalTask, RunUpdate
from crucible_contracts.retry import Failure, GivenUp, RetryLater
from crucible_runtime.clients import ExecutorPool, StorageClient
from crucible_worker.dead_letters import parse_time
from crucible_worker.retrying import retry_record, worker_losses, worker_lost_reason

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    """What one run of the task works with.

    `retries` is Celery's count of earlier deliveries; `busy_retries` and `failures` are the
    retries the task asked for itself, carried in its kwargs. `first_seen_at` is when the first
    delivery was received, carried in the kwargs of every retry the task sends.
    """

    task: EvalTask
    retries: int
    busy_retries: int
    failures: int
    first_seen_at: datetime

    @classmethod
    def decode(
        cls,
        task: Any,
        *,
        retries: int,
        busy_retries: int,
        failures: int,
        first_seen_at: str | None,
    ) -> Delivery:
        """Validate the task argument; a malformed one is given up, never retried."""
        first_seen = parse_time(first_seen_at) or datetime.now(UTC)
        try:
            eval_task = EvalTask.model_validate(task)
        except ValidationError as exc:
            reason = f"malformed task: {_summary(exc)}"
            raise GivenUp(reason, attempts=retries + 1, first_seen_at=first_seen) from exc
        return cls(eval_task, retries, busy_retries, failures, first_seen)

    @property
    def attempt(self) -> int:
        """This delivery's attempt number, the first being 1: every delivery counts."""
        return self.retries + 1

    @property
    def losses(self) -> int:
        return worker_losses(
            retries=self.retries, busy_retries=self.busy_retries, failures=self.failures
        )

    def gave_up(self, reason: str, *, attempts: int | None = None) -> GivenUp:
        return GivenUp(reason, attempts=attempts or self.attempt, first_seen_at=self.first_seen_at)

    def retry_kwargs(self, step: RetryLater) -> dict[str, Any]:
        return {
            "task": self.task.model_dump(mode="json"),
            "busy_retries": step.busy_retries,
            "failures": step.failures,
            "first_seen_at": self.first_seen_at.isoformat(),
        }


def after_worker_loss(
    delivery: Delivery,
    *,
    storage: StorageClient,
    executors: ExecutorPool,
    max_losses: int,
    retry_delay: float,
) -> None:
    """Before a delivery that follows a lost worker process runs anything.

    The lost attempt's program may still be running on an executor: it is stopped first, so that
    this attempt never runs the program beside it (an executor answers /kill once the killed run
    has left its slot, and never lets a new request join a killed run). After `max_losses` losses
    this raises GivenUp (the program itself may be what kills the worker). Otherwise the retry is
    recorded: Celery sent it, not the task, so nobody else could.
    """
    losses = delivery.losses
    if not losses:
        return
    executors.kill(delivery.task.eval_id)
    if losses >= max_losses:
        # This delivery runs nothing: the attempts were the lost ones.
        raise delivery.gave_up(worker_lost_reason(losses), attempts=delivery.retries)
    # Idempotent: when the task's own retry already raised the attempts, storage records nothing.
    update = retry_record(
        next_attempt=delivery.attempt,
        failure=Failure.WORKER_LOST,
        error=f"the worker process running attempt {delivery.retries} was lost",
        countdown=retry_delay,
    )
    record_retry(delivery.task, update, storage=storage)


def record_scheduled_retry(delivery: Delivery, step: RetryLater, *, storage: StorageClient) -> bool:
    """Record that the next attempt is scheduled, and why; False when the run has already ended.

    A storage that cannot be reached does not stop the retry: the record is lost, the run is not.
    """
    update = retry_record(
        next_attempt=delivery.attempt + 1,
        failure=step.failure,
        error=step.error,
        countdown=step.countdown,
    )
    return record_retry(delivery.task, update, storage=storage)


def record_retry(task: EvalTask, update: RunUpdate, *, storage: StorageClient) -> bool:
    try:
        storage.update_run(task.eval_id, task.role, update)
    except Conflict:
        log.info("eval %s %s ended meanwhile; not retrying it", task.eval_id, task.role)
        return False
    except CrucibleError as exc:
        log.warning("could not record the retry of eval %s: %s", task.eval_id, exc)
    return True


def _summary(exc: ValidationError) -> str:
    problems = [f"{'.'.join(map(str, e['loc'])) or 'task'}: {e['msg']}" for e in exc.errors()]
    return "; ".join(problems[:5])
