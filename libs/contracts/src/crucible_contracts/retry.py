"""Retry policies as data: the budgets of one run, the same on both paths.

The decision that spends them is `crucible_runtime.lifecycle.next_step`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off with full jitter, capped.

    `max_attempts` counts every attempt, the first included; `delay(n)` is the wait after the
    n-th failed attempt (n starts at 1). `window`, when set, bounds the time as well: no attempt
    starts more than `window` seconds after the first one failed.
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    jitter: bool = True
    window: float | None = None

    def delay(self, failed_attempts: int, rng: random.Random | None = None) -> float:
        # The exponent is capped so that a long outage cannot overflow the float.
        ceiling = min(self.max_delay, self.base_delay * 2 ** min(max(0, failed_attempts - 1), 32))
        if not self.jitter:
            return ceiling
        return (rng or random).uniform(ceiling / 2, ceiling)

    def exhausted(self, attempts: int, *, elapsed: float = 0.0) -> bool:
        """Whether `attempts` attempts are all there may be, or the next one would start
        `elapsed` seconds after the first failure, beyond the window."""
        return attempts >= self.max_attempts or (self.window is not None and elapsed > self.window)


# Executor answered busy: try again soon; this is load, not a failure.
EXECUTOR_BUSY = RetryPolicy(max_attempts=60, base_delay=0.2, max_delay=2.0)
# Network errors and 5xx from executors or storage: retried for a minute, which outlasts the
# restart of an executor or of storage; the attempts cap only bounds a tiny base delay.
TRANSIENT = RetryPolicy(max_attempts=30, base_delay=0.5, max_delay=10.0, window=60.0)
# Recording a result that already exists: worth waiting for rather than running the program again.
RECORD_RESULT = RetryPolicy(max_attempts=8, base_delay=0.25, max_delay=5.0)


# --- the budgets of one run ------------------------------------------------------------------------


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
    # Worker processes that may die running the run before it is given up (the program itself
    # may be what kills them).
    worker_losses: int = 3
