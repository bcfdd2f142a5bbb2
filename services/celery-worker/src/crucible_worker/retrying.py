"""What the Celery task does after a failed attempt: retry after a countdown, or give up, and why."""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from crucible_contracts.errors import Busy, CrucibleError
from crucible_contracts.models import RunUpdate
from crucible_contracts.retry import RetryPolicy


class Failure(StrEnum):
    """Why an attempt ended without a result, as each retry records it on the run."""

    BUSY = "busy"  # every executor at capacity: load, not a failure
    TRANSIENT = "transient"  # executors or storage unreachable, or a 5xx
    WORKER_LOST = "worker_lost"  # the worker process died mid-task (OOM, SIGKILL)


@dataclass(frozen=True)
class Policies:
    busy: RetryPolicy
    transient: RetryPolicy


@dataclass(frozen=True)
class RetryLater:
    """Send the task again in `countdown` seconds, carrying the updated counters."""

    countdown: float
    busy_retries: int
    failures: int
    failure: Failure
    error: str


@dataclass(frozen=True)
class GiveUp:
    """End the run `error` with `reason` and park the task in the dead-letter queue."""

    reason: str


def is_transient(exc: CrucibleError) -> bool:
    """Unreachable, or a 5xx answer: worth trying again later. Other 4xx will not change."""
    return exc.status_code >= 500


def next_step(
    exc: CrucibleError,
    *,
    busy_retries: int,
    failures: int,
    policies: Policies,
    rng: random.Random | None = None,
) -> RetryLater | GiveUp:
    """Decide after `exc` ended an attempt; `busy_retries`/`failures` count the earlier ones.

    Busy is load, not a failure: it has its own (large) budget and never uses up the transient
    one. Its countdown honours the executor's Retry-After, capped at the busy policy's max delay.
    """
    if isinstance(exc, Busy):
        tries = busy_retries + 1
        if policies.busy.exhausted(tries):
            return GiveUp(f"every executor stayed at capacity through {tries} attempts")
        delay = max(policies.busy.delay(tries, rng), exc.retry_after)
        countdown = min(delay, policies.busy.max_delay)
        return RetryLater(
            countdown=countdown,
            busy_retries=tries,
            failures=failures,
            failure=Failure.BUSY,
            error=exc.message,
        )
    if is_transient(exc):
        tries = failures + 1
        if policies.transient.exhausted(tries):
            return GiveUp(f"gave up after {tries} failed attempts: {exc.message}")
        countdown = policies.transient.delay(tries, rng)
        return RetryLater(
            countdown=countdown,
            busy_retries=busy_retries,
            failures=tries,
            failure=Failure.TRANSIENT,
            error=exc.message,
        )
    return GiveUp(f"not retried ({exc.code}): {exc.message}")


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
