"""How the queue-worker carries one delivered task to its end, and what it then tells the queue.

The steps are those of `crucible_runtime.consumer` (start_run → execute → record_result), each
wrapped in the legacy path's retries: executors at capacity are waited for with the busy policy
(load, not a failure), unreachable executors and storage with the transient policy. A run ends
`error` with a reason naming the cause when a policy is exhausted; when even that cannot be
written (storage down), the task goes back to the queue so that the reason is never lost.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TypeVar

from prometheus_client import Counter

from crucible_contracts.errors import CrucibleError, NotFound, Unavailable
from crucible_contracts.models import EvalTask, ExecuteResult
from crucible_contracts.names import Backend
from crucible_contracts.retry import (
    Budgets,
    Failure,
    GivenUp,
    GiveUp,
    describe,
    is_transient,
    next_step,
)
from crucible_queue.models import Delivery
from crucible_runtime import consumer
from crucible_runtime.clients import ExecutorPool, StorageClient, execute_request_for
from crucible_runtime.dead_letters import DeadLetter, DeadLetterStore

log = logging.getLogger(__name__)

# The dead-letter entries of the legacy path name this as the task that gave the run up.
LEGACY_TASK_NAME = "queue-worker"

T = TypeVar("T")

RETRIES = Counter(
    "crucible_legacy_worker_retries_total", "Waits before trying a step again", ["cause"]
)


class Ack(StrEnum):
    COMPLETE = "complete"
    FAIL = "fail"
    REQUEUE = "requeue"
    NONE = "none"  # abandoned at shutdown: whoever abandoned it already gave it back


@dataclass
class Reply:
    """What to tell the queue-service about a task once the worker is done with it."""

    ack: Ack
    reason: str | None = None
    count_attempt: bool = False


@dataclass
class InFlight:
    """One in-flight task. `lock` orders recording a result against abandoning it at shutdown."""

    delivery: Delivery
    lock: threading.Lock = field(default_factory=threading.Lock)
    abandoned: bool = False
    done: bool = False


class Interrupted(Exception):
    """The worker is stopping while this task waits to be retried: give the task back."""


class TaskHandler:
    """Runs delivered tasks; thread-safe (clients are pooled and shared between threads)."""

    def __init__(
        self,
        *,
        storage: StorageClient,
        executors: ExecutorPool,
        budgets: Budgets,
        max_attempts: int,
        stopping: threading.Event,
        dead_letters: DeadLetterStore | None = None,
    ) -> None:
        """`budgets` are the run's retries (shared with the Celery path); `max_attempts` how
        often a task may be delivered without an answer before the worker is taken to be what
        dies running it; `dead_letters`, where given-up runs are parked (None: nowhere)."""
        self.storage = storage
        self.executors = executors
        self.budgets = budgets
        self.max_attempts = max_attempts
        self.stopping = stopping
        self.dead_letters = dead_letters

    def handle(self, in_flight: InFlight) -> Reply:
        """Take the task of `in_flight` to a recorded end (or give it back) and say how to ack it."""
        delivery = in_flight.delivery
        task, attempt = delivery.task, delivery.attempts
        try:
            if attempt > self.max_attempts:
                raise GivenUp(
                    f"worker lost too often: delivered {attempt} times without an answer "
                    f"(limit {self.max_attempts})"
                )
            started = self._storage_call(
                "start run", lambda: consumer.start_run(task, storage=self.storage, attempt=attempt)
            )
            if not started:
                return Reply(Ack.COMPLETE, "run had already ended; skipped")
            result = self._execute(task)
            return self._record(in_flight, result)
        except Interrupted as exc:
            return Reply(Ack.REQUEUE, f"worker stopping: {exc}")
        except NotFound as exc:
            log.error("eval %s unknown to storage: %s", task.eval_id, exc)
            return Reply(Ack.FAIL, f"evaluation unknown to storage: {exc.message}")
        except GivenUp as exc:
            return self._give_up(delivery, str(exc))
        except Exception as exc:
            # A bug or a garbled answer must not kill the thread or leave the run `running`.
            log.exception("eval %s: unexpected error", task.eval_id)
            return self._give_up(delivery, f"queue-worker could not handle the task: {exc!r}")

    # --- steps -----------------------------------------------------------------------------

    def _execute(self, task: EvalTask) -> ExecuteResult:
        """Call the executors until they answer, deciding each retry with `retry.next_step`
        (the Celery path's decision too); its RetryLater is a wait in this thread."""
        request = execute_request_for(task)
        busy_retries = failures = 0
        while True:
            try:
                return self.executors.execute(request)
            except CrucibleError as exc:
                step = next_step(
                    exc,
                    busy_retries=busy_retries,
                    failures=failures,
                    budgets=self.budgets,
                )
                if isinstance(step, GiveUp):
                    raise GivenUp(step.reason) from exc
                if step.failure is Failure.TRANSIENT:
                    log.warning("eval %s: executors unreachable (%s); retrying", task.eval_id, exc)
                busy_retries, failures = step.busy_retries, step.failures
                self._wait(step.countdown, _WAIT_CAUSE[step.failure])

    def _record(self, in_flight: InFlight, result: ExecuteResult) -> Reply:
        task = in_flight.delivery.task
        with in_flight.lock:
            if in_flight.abandoned:
                return Reply(Ack.NONE)
            try:
                consumer.record_result(
                    task, result, storage=self.storage, policy=self.budgets.record
                )
            except Unavailable as exc:
                raise GivenUp(f"result could not be recorded, storage unreachable: {exc}") from exc
            finally:
                in_flight.done = True
        if result.status == "completed":
            return Reply(Ack.COMPLETE)
        return Reply(Ack.COMPLETE, f"program ended {result.status}")

    def _give_up(self, delivery: Delivery, reason: str) -> Reply:
        """Park the run in the dead-letter queue and end it `error`; when storage cannot take
        even that, hand the task back (its entry is written once, whatever the deliveries)."""
        task, attempt = delivery.task, delivery.attempts
        log.error("eval %s %s ends error: %s", task.eval_id, task.role, reason)
        self._park(delivery, reason)
        try:
            self._storage_call(
                "record error",
                lambda: consumer.end_with_error(
                    task, reason, storage=self.storage, attempts=attempt
                ),
                interruptible=False,
            )
        except NotFound as exc:
            return Reply(Ack.FAIL, f"{reason}; evaluation unknown to storage: {exc.message}")
        except GivenUp as exc:
            # Nowhere to write the reason: keep the task visible in the queue until storage is back.
            log.error(
                "eval %s: could not record the error (%s); back to the queue", task.eval_id, exc
            )
            return Reply(Ack.REQUEUE, f"{reason}; and {exc}")
        return Reply(Ack.FAIL, reason)

    def park_malformed(self, *, task_id: str | None, reason: str, body: str) -> None:
        """Park a leased task that did not validate: no run is named (eval_id None), the raw
        answer stays in the entry for an operator."""
        entry = DeadLetter(
            eval_id=None,
            backend=Backend.LEGACY,
            task_name=LEGACY_TASK_NAME,
            task_id=task_id,
            kwargs={"raw": body},
            reason=reason,
            failed_at=datetime.now(UTC),
        )
        self._push(entry)

    def _park(self, delivery: Delivery, reason: str) -> None:
        """One dead-letter entry per given-up run, as the Celery path leaves: written before the
        run ends `error`, so whoever sees the run ended finds the entry. Its id follows the task,
        so a delivery given up again after a requeue does not add a second one."""
        if self.dead_letters is None:
            return
        entry = DeadLetter(
            id=uuid.uuid5(uuid.NAMESPACE_URL, f"crucible-legacy:{delivery.task_id}").hex,
            eval_id=delivery.task.eval_id,
            role=delivery.task.role,
            backend=Backend.LEGACY,
            task_name=LEGACY_TASK_NAME,
            task_id=delivery.task_id,
            kwargs={"task": delivery.task.model_dump(mode="json")},
            reason=reason,
            attempts=delivery.attempts,
            failed_at=datetime.now(UTC),
        )
        self._push(entry)

    def _push(self, entry: DeadLetter) -> None:
        if self.dead_letters is None:
            return
        try:
            self.dead_letters.push(entry)
        except Unavailable as exc:
            log.error("could not park eval %s in the dead-letter queue: %s", entry.eval_id, exc)

    # --- retry plumbing --------------------------------------------------------------------

    def _storage_call(self, what: str, call: Callable[[], T], *, interruptible: bool = True) -> T:
        failures = 0
        while True:
            try:
                return call()
            except CrucibleError as exc:
                if not _is_transient(exc):
                    raise
                failures += 1
                transient = self.budgets.transient
                if transient.exhausted(failures):
                    raise GivenUp(
                        f"storage unreachable ({what}) after {failures} attempts: {describe(exc)}"
                    ) from exc
                log.warning("storage unreachable (%s): %s; retrying", what, exc)
                delay = transient.delay(failures)
                if interruptible:
                    self._wait(delay, "storage_down")
                else:
                    RETRIES.labels("storage_down").inc()
                    threading.Event().wait(delay)

    def _wait(self, delay: float, cause: str) -> None:
        RETRIES.labels(cause).inc()
        if self.stopping.wait(delay):
            raise Interrupted(f"gave the task back while waiting ({cause})")


_WAIT_CAUSE = {Failure.BUSY: "executor_busy", Failure.TRANSIENT: "executor_down"}


def _is_transient(exc: CrucibleError) -> bool:
    """Network errors and 5xx answers are worth retrying; 4xx answers are not."""
    return isinstance(exc, Unavailable) or is_transient(exc)
