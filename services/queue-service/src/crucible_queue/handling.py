"""How the queue-worker carries one delivered task to its end, and what it then tells the queue.

The legacy adapter of `crucible_runtime.lifecycle`: it makes attempts and follows `next_step`
as the Celery task does, with the same budgets, reasons and retry records; a `RetryLater` is a
wait in this thread, a `GiveUp` one dead-letter entry and the run ended `error`. When even that
cannot be written (storage down), the task goes back to the queue so that the reason is never
lost.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from prometheus_client import Counter

from crucible_contracts.errors import CrucibleError, NotFound, Unavailable
from crucible_contracts.models import DeadLetter
from crucible_contracts.names import Backend
from crucible_contracts.retry import Budgets, Failure
from crucible_queue.models import Lease
from crucible_runtime import lifecycle
from crucible_runtime.clients import ExecutorPool, StorageClient
from crucible_runtime.dead_letters import DeadLetterStore

log = logging.getLogger(__name__)

# The dead-letter entries of the legacy path name this as the task that gave the run up.
LEGACY_TASK_NAME = "queue-worker"

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

    lease: Lease
    lock: threading.Lock = field(default_factory=threading.Lock)
    abandoned: bool = False
    done: bool = False
    # When the worker renews the lease next (time.monotonic()): a third of it from now.
    renew_at: float = 0.0

    def __post_init__(self) -> None:
        self.renew_at = time.monotonic() + self.lease.lease_seconds / 3

    @contextmanager
    def claim(self) -> Iterator[bool]:
        """Held while a result is recorded: yields False once the task was given back."""
        with self.lock:
            try:
                yield not self.abandoned
            finally:
                self.done = True


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
        stopping: threading.Event,
        dead_letters: DeadLetterStore | None = None,
    ) -> None:
        """`budgets` are the run's retries and worker losses, shared with the Celery path;
        `dead_letters`, where given-up runs are parked (None: nowhere)."""
        self.storage = storage
        self.executors = executors
        self.budgets = budgets
        self.stopping = stopping
        self.dead_letters = dead_letters

    def handle(self, in_flight: InFlight) -> Reply:
        """Take the task of `in_flight` to a recorded end (or give it back) and say how to ack it."""
        lease = in_flight.lease
        try:
            return self._run(in_flight)
        except Interrupted as exc:
            return Reply(Ack.REQUEUE, f"worker stopping: {exc}")
        except Exception as exc:
            # A bug or a garbled answer must not kill the thread or leave the run `running`.
            log.exception("eval %s: unexpected error", lease.task.eval_id)
            return self._give_up(lease, f"queue-worker could not handle the task: {exc!r}")

    def _run(self, in_flight: InFlight) -> Reply:
        """lifecycle.attempt until lifecycle.next_step says done or give up; a RetryLater is
        recorded on the run, as on the Celery path, then waited out in this thread."""
        lease = in_flight.lease
        task = lease.task
        # Every lease after the first follows a worker that vanished with the task (its lease
        # expired): the queue's count of deliveries is the path's count of worker losses.
        lost = lifecycle.after_worker_loss(
            task,
            losses=lease.attempts - 1,
            number=lease.attempts,
            max_losses=self.budgets.worker_losses,
            countdown=0,
            storage=self.storage,
            executors=self.executors,
        )
        if lost is not None:
            # This lease runs nothing: the attempts were the lost ones.
            return self._give_up(lease, lost.reason, attempts=lease.attempts - 1)
        number, busy_retries, failures = lease.attempts, 0, 0
        failing_since: float | None = None  # time.monotonic() of the first transient failure
        while True:
            outcome = lifecycle.attempt(
                task,
                number=number,
                storage=self.storage,
                executors=self.executors,
                record=self.budgets.record,
                claim=in_flight.claim,
            )
            step = lifecycle.next_step(
                outcome,
                busy_retries=busy_retries,
                failures=failures,
                budgets=self.budgets,
                failing_for=0.0 if failing_since is None else time.monotonic() - failing_since,
            )
            if isinstance(step, lifecycle.Done):
                return _reply(outcome)
            if isinstance(step, lifecycle.GiveUp):
                return self._give_up(lease, step.reason, attempts=number)
            assert isinstance(outcome, lifecycle.Failed)
            label, cause = _cause(outcome, step)
            # Busy is load, not a failure: only outages are warnings.
            log.log(
                logging.INFO if step.failure is Failure.BUSY else logging.WARNING,
                "eval %s: %s; retrying in %.2fs",
                task.eval_id,
                cause,
                step.countdown,
            )
            number += 1
            if not lifecycle.record_scheduled_retry(
                task, step, next_attempt=number, storage=self.storage
            ):
                return Reply(Ack.COMPLETE, "run ended meanwhile; not retried")
            if step.failure is Failure.TRANSIENT and failing_since is None:
                failing_since = time.monotonic()
            busy_retries, failures = step.busy_retries, step.failures
            self._wait(step.countdown, label)

    def _give_up(self, lease: Lease, reason: str, *, attempts: int | None = None) -> Reply:
        """Park the run in the dead-letter queue and end it `error`; when storage cannot take
        even that, hand the task back (its entry is written once, whatever the deliveries).
        `attempts`: the run's attempts so far (default: this delivery's number)."""
        task, attempts = lease.task, attempts or lease.attempts
        log.error("eval %s %s ends error: %s", task.eval_id, task.role, reason)
        self._park(lease, reason, attempts=attempts)
        policy = self.budgets.transient
        began = time.monotonic()
        for tries in itertools.count(1):
            try:
                lifecycle.end_with_error(task, reason, storage=self.storage, attempts=attempts)
                return Reply(Ack.FAIL, reason)
            except NotFound as exc:
                return Reply(Ack.FAIL, f"{reason}; evaluation unknown to storage: {exc.message}")
            except CrucibleError as exc:
                elapsed = time.monotonic() - began
                if not lifecycle.is_transient(exc) or policy.exhausted(tries, elapsed=elapsed):
                    # Nowhere to write the reason: keep the task visible in the queue until
                    # storage is back.
                    log.error(
                        "eval %s: could not record the error (%s); back to the queue",
                        task.eval_id,
                        exc,
                    )
                    return Reply(
                        Ack.REQUEUE, f"{reason}; and the error could not be recorded: {exc}"
                    )
                log.warning("storage unreachable (record error): %s; retrying", exc)
                RETRIES.labels("storage_down").inc()
                # Not interruptible: a stopping worker still writes the reason if it can.
                threading.Event().wait(policy.delay(tries))

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

    def _park(self, lease: Lease, reason: str, *, attempts: int) -> None:
        """One dead-letter entry per given-up run, as the Celery path leaves: written before the
        run ends `error`, so whoever sees the run ended finds the entry. Its id follows the task,
        so a task given up again after a requeue does not add a second one."""
        if self.dead_letters is None:
            return
        entry = DeadLetter(
            id=uuid.uuid5(uuid.NAMESPACE_URL, f"crucible-legacy:{lease.task_id}").hex,
            eval_id=lease.task.eval_id,
            role=lease.task.role,
            backend=Backend.LEGACY,
            task_name=LEGACY_TASK_NAME,
            task_id=lease.task_id,
            kwargs={"task": lease.task.model_dump(mode="json")},
            reason=reason,
            attempts=attempts,
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

    def _wait(self, delay: float, cause: str) -> None:
        RETRIES.labels(cause).inc()
        if self.stopping.wait(delay):
            raise Interrupted(f"gave the task back while waiting ({cause})")


def _reply(outcome: lifecycle.Outcome) -> Reply:
    if isinstance(outcome, lifecycle.Skipped):
        return Reply(Ack.COMPLETE, "run had already ended; skipped")
    if isinstance(outcome, lifecycle.Dropped):
        return Reply(Ack.NONE)  # given back at shutdown: whoever gave it back acked it
    assert isinstance(outcome, lifecycle.Ran)
    status = outcome.result.status
    return (
        Reply(Ack.COMPLETE)
        if status == "completed"
        else Reply(Ack.COMPLETE, f"program ended {status}")
    )


def _cause(outcome: lifecycle.Failed, step: lifecycle.RetryLater) -> tuple[str, str]:
    """The failure as (the `cause` label of crucible_legacy_worker_retries_total, the log line
    in the words operators grep for)."""
    if step.failure is Failure.BUSY:
        return "executor_busy", f"executors at capacity: {outcome.error}"
    if outcome.stage is lifecycle.Stage.EXECUTE:
        return "executor_down", f"executors unreachable: {outcome.error}"
    return "storage_down", f"storage unreachable ({outcome.stage}): {outcome.error}"
