"""The Celery path's own retry records and reasons: worker losses and Celery's time limits.

The decision after a failed attempt is `crucible_contracts.retry.next_step`, shared with the
legacy path; this module adds what only a Celery delivery knows.
"""

from __future__ import annotations

from crucible_contracts.models import RunUpdate
from crucible_contracts.retry import Failure


def retry_record(*, next_attempt: int, failure: Failure, error: str, countdown: float) -> RunUpdate:
    """What the run records when attempt `next_attempt` is scheduled, and why.

    It raises `attempts` without changing the status, which storage records as one
    `eval.retried` event carrying this detail. A busy retry counts as an attempt (the program was
    offered to the executors again) but not as a failure: it never uses the transient budget.
    """
    detail = {"failure": failure.value, "error": error, "countdown": round(countdown, 3)}
    return RunUpdate(attempts=next_attempt, detail=detail)


def soft_time_limit_reason(soft_limit: float | None, *, killed: bool) -> str:
    limit = f" of {soft_limit:g}s" if soft_limit else ""
    what = "the program was stopped" if killed else "no executor was still running the program"
    return f"the worker's soft time limit{limit} passed before the executor answered; {what}"


def hard_time_limit_reason(hard_limit: float | None) -> str:
    limit = f" of {hard_limit:g}s" if hard_limit else ""
    return f"the worker's hard time limit{limit} passed; the task was killed"


def worker_losses(*, retries: int, busy_retries: int, failures: int) -> int:
    """How many times a worker process died running this task.

    Every retry the task asks for counts as a busy retry or a failure; Celery's retry after a
    lost worker process counts in neither, so the difference is the number of losses.
    """
    return max(0, retries - busy_retries - failures)


def worker_lost_reason(losses: int) -> str:
    return f"the worker process running it was lost {losses} times"
