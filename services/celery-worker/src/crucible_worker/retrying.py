"""What only a Celery delivery knows: its count of worker losses and Celery's time limits.

The decision after an attempt is `crucible_runtime.lifecycle.next_step`, shared with the legacy
path, and so are the retry records and the worker-loss reason.
"""

from __future__ import annotations


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
