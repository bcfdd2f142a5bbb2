"""One run's lifecycle, the same on both paths: an attempt, then one decision.

Both consumers (the legacy queue-worker and the Celery task) are adapters around two functions:

- `attempt(task, ...) -> Outcome` does one try: mark the run `running`, have an executor run the
  program, record its result. It never sleeps, except in the bounded retry around recording a
  result (running a finished program again is worse than waiting), and it raises nothing from
  our services: every failure comes back as a `Failed` outcome naming its stage.
- `next_step(outcome, ...) -> Done | RetryLater | GiveUp` is pure.

An adapter maps `RetryLater` to its own mechanism (a wait in the thread on the legacy path,
`task.retry(countdown=...)` on Celery) after `record_retry` left the same record on the run, and
`GiveUp` to one dead-letter entry and the run ended `error` (`dead_letters.record_give_up`).
A worker process lost mid-run is judged by `after_worker_loss`, also the same on both paths.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from crucible_contracts.errors import Busy, Conflict, CrucibleError, Unavailable
from crucible_contracts.models import EvalTask, ExecuteResult, RunUpdate
from crucible_contracts.retry import RECORD_RESULT, Budgets, Failure, RetryPolicy
from crucible_contracts.status import Status
from crucible_runtime.clients import ExecutorPool, StorageClient, execute_request_for

log = logging.getLogger(__name__)


# --- the outcome of one attempt ----------------------------------------------------------------


class Stage(StrEnum):
    """Where an attempt stopped: what it was doing when a service failed it."""

    START = "start run"  # marking the run `running` in storage
    EXECUTE = "execute"  # the executors
    RECORD = "record result"  # storing the executor's result


@dataclass(frozen=True)
class Ran:
    """The program ran and its result is recorded."""

    result: ExecuteResult


@dataclass(frozen=True)
class Skipped:
    """The run had already ended (cancelled, finished): nothing was run."""


@dataclass(frozen=True)
class Dropped:
    """The program ran, but its consumer had given the task back meanwhile (a shutdown past its
    grace): the result is not recorded, the next delivery runs it."""

    result: ExecuteResult


@dataclass(frozen=True)
class Failed:
    """A service failed the attempt at `stage`; no result was recorded."""

    stage: Stage
    error: CrucibleError


Outcome = Ran | Skipped | Dropped | Failed


@contextlib.contextmanager
def _always() -> Iterator[bool]:
    yield True


# A consumer's hold on its task while a result is recorded: yields whether it may still record.
Claim = Callable[[], AbstractContextManager[bool]]


def attempt(
    task: EvalTask,
    *,
    number: int,
    storage: StorageClient,
    executors: ExecutorPool,
    record: RetryPolicy = RECORD_RESULT,
    claim: Claim = _always,
) -> Outcome:
    """One try at `task`, its `number`th (the first being 1; recorded as the run's attempts)."""
    try:
        if not start_run(task, storage=storage, attempt=number):
            return Skipped()
    except CrucibleError as exc:
        return Failed(Stage.START, exc)
    try:
        result = executors.execute(execute_request_for(task))
    except CrucibleError as exc:
        return Failed(Stage.EXECUTE, exc)
    with claim() as may_record:
        if not may_record:
            return Dropped(result)
        try:
            record_result(task, result, storage=storage, policy=record)
        except CrucibleError as exc:
            return Failed(Stage.RECORD, exc)
    return Ran(result)


def start_run(task: EvalTask, *, storage: StorageClient, attempt: int) -> bool:
    """Mark the run `running`. False when it has already ended (cancelled, finished): skip it."""
    try:
        storage.update_run(
            task.eval_id, task.role, RunUpdate(status=Status.RUNNING, attempts=attempt)
        )
    except Conflict:
        log.info("eval %s %s already ended; not running it", task.eval_id, task.role)
        return False
    return True


def record_result(
    task: EvalTask,
    result: ExecuteResult,
    *,
    storage: StorageClient,
    policy: RetryPolicy = RECORD_RESULT,
) -> None:
    """Store the executor's result, retrying while storage is unreachable.

    A Conflict means the run ended meanwhile (e.g. cancelled): that end stands and the result is
    dropped. Raises Unavailable once the policy is exhausted.
    """
    update = RunUpdate(
        status=result.status,
        executor_id=result.executor_id,
        exit_code=result.exit_code,
        output=result.output,
        error=result.error,
        output_base64=result.output_base64,
        error_base64=result.error_base64,
        output_truncated=result.output_truncated,
        error_truncated=result.error_truncated,
        runtime_ms=result.runtime_ms,
        reason=result.reason,
    )
    for tries in range(1, policy.max_attempts + 1):
        try:
            storage.update_run(task.eval_id, task.role, update)
            return
        except Conflict:
            log.info("eval %s %s ended before its result arrived", task.eval_id, task.role)
            return
        except Unavailable:
            if policy.exhausted(tries):
                raise
            time.sleep(policy.delay(tries))


def end_with_error(task: EvalTask, reason: str, *, storage: StorageClient, attempts: int) -> None:
    """End the run `error` (the platform could not run it); a run that already ended stays as is."""
    with contextlib.suppress(Conflict):
        storage.update_run(
            task.eval_id,
            task.role,
            RunUpdate(status=Status.ERROR, reason=reason, attempts=attempts),
        )


# --- the one decision after an attempt ----------------------------------------------------------


@dataclass(frozen=True)
class Done:
    """The run has its end: a recorded result (None when it was skipped or dropped)."""

    result: ExecuteResult | None


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


Step = Done | RetryLater | GiveUp


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


def next_step(
    outcome: Outcome,
    *,
    busy_retries: int,
    failures: int,
    budgets: Budgets,
    failing_for: float = 0.0,
    rng: random.Random | None = None,
) -> Step:
    """What a consumer does after `outcome`; `busy_retries`/`failures` count the earlier retries,
    `failing_for` is how long ago the run's first transient failure was (0 for none yet).

    Busy is load, not a failure: it has its own (large) budget and never uses up the transient
    one. Its countdown honours the executor's Retry-After, capped at the busy policy's max delay.
    Unreachable services and 5xx answers use the transient budget, whatever the stage, in
    attempts and in time (its window: long enough to outlast an executor's restart); a 4xx will
    not change and is given up at once.
    """
    if isinstance(outcome, Ran | Dropped):
        return Done(outcome.result if isinstance(outcome, Ran) else None)
    if isinstance(outcome, Skipped):
        return Done(None)
    exc = outcome.error
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
        delay = budgets.transient.delay(tries, rng)
        if budgets.transient.exhausted(tries, elapsed=failing_for + delay):
            return GiveUp(
                f"gave up after {tries} failed attempts in {failing_for:.0f}s: {describe(exc)}"
            )
        return RetryLater(
            countdown=delay,
            busy_retries=busy_retries,
            failures=tries,
            failure=Failure.TRANSIENT,
            error=exc.message,
        )
    return GiveUp(f"not retried ({exc.code}): {exc.message}")


def is_transient(exc: CrucibleError) -> bool:
    """Unreachable, or a 5xx answer: worth trying again later. A 4xx will not change."""
    return isinstance(exc, Unavailable) or exc.status_code >= 500


def describe(exc: CrucibleError) -> str:
    """The error's message, with the per-executor errors an ExecutorPool collected."""
    errors = exc.details.get("errors") if exc.details else None
    return f"{exc.message} ({'; '.join(errors)})" if errors else exc.message


# --- what both paths record on the run ----------------------------------------------------------


def retry_record(*, next_attempt: int, failure: Failure, error: str, countdown: float) -> RunUpdate:
    """What the run records when attempt `next_attempt` is scheduled, and why.

    It raises `attempts` without changing the status, which storage records as one
    `eval.retried` event carrying this detail. A busy retry counts as an attempt (the program was
    offered to the executors again) but not as a failure: it never uses the transient budget.
    """
    detail = {"failure": failure.value, "error": error, "countdown": round(countdown, 3)}
    return RunUpdate(attempts=next_attempt, detail=detail)


def record_retry(task: EvalTask, update: RunUpdate, *, storage: StorageClient) -> bool:
    """Leave `update` (a `retry_record`) on the run; False when the run has already ended.

    A storage that cannot be reached does not stop the retry: the record is lost, the run is not.
    """
    try:
        storage.update_run(task.eval_id, task.role, update)
    except Conflict:
        log.info("eval %s %s ended meanwhile; not retrying it", task.eval_id, task.role)
        return False
    except CrucibleError as exc:
        log.warning("could not record the retry of eval %s: %s", task.eval_id, exc)
    return True


def record_scheduled_retry(
    task: EvalTask, step: RetryLater, *, next_attempt: int, storage: StorageClient
) -> bool:
    """Record that attempt `next_attempt` is scheduled after `step`; False when the run ended."""
    update = retry_record(
        next_attempt=next_attempt,
        failure=step.failure,
        error=step.error,
        countdown=step.countdown,
    )
    return record_retry(task, update, storage=storage)


def worker_lost_reason(losses: int) -> str:
    return f"the worker process running it was lost {losses} times"


def after_worker_loss(
    task: EvalTask,
    *,
    losses: int,
    number: int,
    max_losses: int,
    countdown: float,
    storage: StorageClient,
    executors: ExecutorPool,
) -> GiveUp | None:
    """Before attempt `number` of a run whose worker process died `losses` times runs anything.

    The lost attempt's program is left alone: this attempt asks the executor that ran it first
    (`ExecutorPool` keeps one order per run), which joins the run still going or hands back its
    kept result, so the program runs once. Only when that executor lost the run too (it crashed
    or restarted) does the program run again. After `max_losses` losses this is a GiveUp (the
    program itself may be what kills the worker) and the program is stopped. Otherwise the
    retry is recorded: the broker or the queue sent it again, not the consumer, so nobody else
    could. `countdown` is how long the redelivery took to come (recorded only).
    """
    if not losses:
        return None
    if losses >= max_losses:
        executors.kill(task.eval_id, task.role)
        return GiveUp(worker_lost_reason(losses))
    update = retry_record(
        next_attempt=number,
        failure=Failure.WORKER_LOST,
        error=f"the worker process running attempt {number - 1} was lost",
        countdown=countdown,
    )
    record_retry(task, update, storage=storage)
    return None
