"""One delivery of tasks.evaluate_code, without Celery: what its kwargs carry between retries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from crucible_contracts.models import EvalTask
from crucible_contracts.retry import Failure
from crucible_runtime.lifecycle import GivenUp, RetryLater
from crucible_worker.dead_letters import parse_time
from crucible_worker.retrying import worker_losses


@dataclass(frozen=True)
class Delivery:
    """What one run of the task works with.

    `retries` is Celery's count of earlier deliveries; `busy_retries` and `failures` are the
    retries the task asked for itself, carried in its kwargs. `first_seen_at` is when the first
    delivery was received, `failing_since` when its first transient failure was (the transient
    window counts from it), both carried in the kwargs of every retry the task sends.
    """

    task: EvalTask
    retries: int
    busy_retries: int
    failures: int
    first_seen_at: datetime
    failing_since: datetime | None = None

    @classmethod
    def decode(
        cls,
        task: Any,
        *,
        retries: int,
        busy_retries: int,
        failures: int,
        first_seen_at: str | None,
        failing_since: str | None = None,
    ) -> Delivery:
        """Validate the task argument; a malformed one is given up, never retried."""
        first_seen = parse_time(first_seen_at) or datetime.now(UTC)
        try:
            eval_task = EvalTask.model_validate(task)
        except ValidationError as exc:
            reason = f"malformed task: {_summary(exc)}"
            raise GivenUp(reason, attempts=retries + 1, first_seen_at=first_seen) from exc
        return cls(
            eval_task, retries, busy_retries, failures, first_seen, parse_time(failing_since)
        )

    @property
    def attempt(self) -> int:
        """This delivery's attempt number, the first being 1: every delivery counts."""
        return self.retries + 1

    @property
    def losses(self) -> int:
        return worker_losses(
            retries=self.retries, busy_retries=self.busy_retries, failures=self.failures
        )

    @property
    def failing_for(self) -> float:
        """Seconds since the first transient failure (0 before any)."""
        since = self.failing_since
        if since is None:
            return 0.0
        if since.tzinfo is None:  # written by another hand: read as UTC
            since = since.replace(tzinfo=UTC)
        return max(0.0, (datetime.now(UTC) - since).total_seconds())

    def gave_up(self, reason: str, *, attempts: int | None = None) -> GivenUp:
        return GivenUp(reason, attempts=attempts or self.attempt, first_seen_at=self.first_seen_at)

    def retry_kwargs(self, step: RetryLater) -> dict[str, Any]:
        failing_since = self.failing_since
        if failing_since is None and step.failure is Failure.TRANSIENT:
            failing_since = datetime.now(UTC)
        return {
            "task": self.task.model_dump(mode="json"),
            "busy_retries": step.busy_retries,
            "failures": step.failures,
            "first_seen_at": self.first_seen_at.isoformat(),
            "failing_since": failing_since.isoformat() if failing_since else None,
        }


def _summary(exc: ValidationError) -> str:
    problems = [f"{'.'.join(map(str, e['loc'])) or 'task'}: {e['msg']}" for e in exc.errors()]
    return "; ".join(problems[:5])
