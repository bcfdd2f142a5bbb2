"""Retry policies as data, and the one decision both consumers take after a failed attempt."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from crucible_contracts.errors import Busy, CrucibleError


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off with full jitter, capped.

    `max_attempts` counts every attempt, the first included; `delay(n)` is the wait after the
    n-th failed attempt (n starts at 1).
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    jitter: bool = True

    def delay(self, failed_attempts: int, rng: random.Random | None = None) -> float:
        # The exponent is capped so that a long outage cannot overflow the float.
        ceiling = min(self.max_delay, self.base_delay * 2 ** min(max(0, failed_attempts - 1), 32))
        if not self.jitter:
            return ceiling
        return (rng or random).uniform(ceiling / 2, ceiling)

    def exhausted(self, attempts: int) -> bool:
        return attempts >= self.max_attempts


# Executor answered busy: try again soon; this is load, not a failure.
EXECUTOR_BUSY = RetryPolicy(max_attempts=60, base_delay=0.2, max_delay=2.0)
# Network errors and 5xx from executors or storage.
TRANSIENT = RetryPolicy(max_attempts=5, base_delay=0.5, max_delay=15.0)
# Recording a result that already exists: worth waiting for rather than running the program again.
RECORD_RESULT = RetryPolicy(max_attempts=8, base_delay=0.25, max_delay=5.0)


# --- one decision after a failed attempt, for both consumers ------------------------------------


class Failure(StrEnum):
    """Why an attempt ended without a result, as each retry records it on the run."""

    BUSY = "busy"  # every executor at capacity: load, not a failure
    TRANSIENT = "transient"  # executors or storage unreachable, or a 5xx
    WORKER_LOST = "worker_lost"  # the worker process died mid-task (OOM, SIGKILL)


@dataclass(frozen=True)
class Budgets:
    """The retry budgets of one run, the same on both paths (the *_RETRY_* settings)."""

    busy: RetryPolicy = EXECUTOR_BUSY
    transient: RetryPolicy = TRANSIENT
    record: RetryPolicy = RECORD_RESULT


@dataclass(frozen=True)
class RetryLater:
    """Try again in `countdown` seconds, with the counters this retry updated."""

    countdown: float
    busy_retries: int
    failures: int
    failure: Failure
    error: str


@dataclass(frozen=True)
class GiveUp:
    """End the run `error` with `reason`; the platform could not run it within its budgets."""

    reason: str


class GivenUp(Exception):
    """Raised by a consumer once it has decided (a GiveUp) not to try a run again.

    The run then ends `error` with `reason` and leaves one dead-letter record. On the Celery path
    Celery reports it through `task_failure` like any other failure of the task; `attempts` and
    `first_seen_at` are what the consumer knew (only the reason survives pickling).
    """

    def __init__(
        self, reason: str, attempts: int | None = None, first_seen_at: datetime | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts
        self.first_seen_at = first_seen_at


def is_transient(exc: CrucibleError) -> bool:
    """Unreachable, or a 5xx answer: worth trying again later. A 4xx will not change."""
    return exc.status_code >= 500


def next_step(
    exc: CrucibleError,
    *,
    busy_retries: int,
    failures: int,
    budgets: Budgets,
    rng: random.Random | None = None,
) -> RetryLater | GiveUp:
    """What a consumer does after `exc` ended an attempt; `busy_retries`/`failures` count the
    earlier retries. Pure: both consumers (the legacy queue-worker and the Celery task) call it
    and only map its answer to their own mechanism (wait in the thread, or `task.retry`).

    Busy is load, not a failure: it has its own (large) budget and never uses up the transient
    one. Its countdown honours the executor's Retry-After, capped at the busy policy's max delay.
    """
    if isinstance(exc, Busy):
        tries = busy_retries + 1
        if budgets.busy.exhausted(tries):
            return GiveUp(f"every executor stayed at capacity through {tries} attempts")
        delay = max(budgets.busy.delay(tries, rng), exc.retry_after)
        return RetryLater(
            countdown=min(delay, budgets.busy.max_delay),
            busy_retries=tries,
            failures=failures,
            failure=Failure.BUSY,
            error=exc.message,
        )
    if is_transient(exc):
        tries = failures + 1
        if budgets.transient.exhausted(tries):
            return GiveUp(f"gave up after {tries} failed attempts: {describe(exc)}")
        return RetryLater(
            countdown=budgets.transient.delay(tries, rng),
            busy_retries=busy_retries,
            failures=tries,
            failure=Failure.TRANSIENT,
            error=exc.message,
        )
    return GiveUp(f"not retried ({exc.code}): {exc.message}")


def describe(exc: CrucibleError) -> str:
    """The error's message, with the per-executor errors an ExecutorPool collected."""
    errors = exc.details.get("errors") if exc.details else None
    return f"{exc.message} ({'; '.join(errors)})" if errors else exc.message
