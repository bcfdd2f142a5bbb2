"""One round of the reconciler: find stuck runs in storage, judge each one, act, report.

The judgements are reconcile.py's; this module gathers the facts they need (the queue-service's
state of a legacy task, the run's events, the broker's queue depths) and carries them out:
enqueue a legacy run again, or stop the program, park a dead letter and end the run `error`. A
run that moves on by itself meanwhile is left as it is. No Celery here: tasks.py wraps it.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import redis

from crucible_contracts.errors import Conflict, CrucibleError
from crucible_contracts.models import RunUpdate, StuckRun
from crucible_contracts.names import TASK_EVALUATE, Backend, Queue, task_id_for
from crucible_contracts.status import Status
from crucible_runtime.clients import ExecutorPool, StorageClient
from crucible_runtime.dead_letters import DeadLetter, DeadLetterStore
from crucible_worker.legacy_queue import LegacyQueue
from crucible_worker.reconcile import (
    LOST_BY_QUEUE,
    Action,
    Decision,
    Rules,
    decide_celery_queued,
    decide_legacy_queued,
    decide_running,
    last_sign_of_life,
    redispatches_of,
    task_of,
)

log = logging.getLogger(__name__)

# The Celery queues evaluations wait in (low is maintenance: never an evaluation).
EVALUATION_QUEUES = (Queue.HIGH, Queue.DEFAULT, Queue.SHADOW)
# Runs acted on that a round's result lists one by one (the counts cover them all).
MAX_LISTED = 100


@dataclass
class Report:
    """What one round did: counts per action, and the runs acted on (not those left waiting)."""

    counts: Counter[str] = field(default_factory=Counter)
    runs: list[dict[str, Any]] = field(default_factory=list)

    def add(self, run: StuckRun, decision: Decision) -> None:
        self.counts[decision.action.value] += 1
        level = logging.INFO if decision.action is Action.WAITING else logging.WARNING
        log.log(
            level,
            "reconciler: eval %s %s (%s, %s) %s: %s",
            run.eval_id,
            run.role,
            run.backend,
            run.status,
            decision.action,
            decision.why,
        )
        if decision.action is not Action.WAITING and len(self.runs) < MAX_LISTED:
            self.runs.append(
                {
                    "eval_id": run.eval_id,
                    "role": run.role.value,
                    "backend": run.backend.value,
                    "status": run.status.value,
                    "action": decision.action.value,
                    "why": decision.why,
                }
            )

    def result(self) -> dict[str, Any]:
        """The reconcile task's result: how many runs it looked at, counts per action, the runs."""
        counts = {action.value: self.counts[action.value] for action in Action}
        return {"checked": sum(self.counts.values()), **counts, "runs": self.runs}


@dataclass
class Reconciler:
    storage: StorageClient
    legacy_queue: LegacyQueue
    # The executors of both paths: a stuck run's program may be on any of them.
    executors: ExecutorPool
    broker: redis.Redis
    dead_letters: DeadLetterStore
    rules: Rules
    batch: int = 100

    def run(self, now: datetime) -> Report:
        """One round over the stuck runs of each backend, the oldest first (`batch` per backend).

        Raises when storage cannot list them; a service that fails while one run is settled
        counts that run as `failed`, and the next round tries again.
        """
        report = Report()
        for backend in Backend:
            queued_after = timedelta(seconds=self.rules.queued_after(backend))
            runs = self.storage.stuck_runs(
                queued_before=now - queued_after,
                running_before=self.rules.running_before(now),
                backend=backend,
                limit=self.batch,
            )
            celery_queued = backend is Backend.CELERY and any(
                run.status is Status.QUEUED for run in runs
            )
            waiting = self._celery_waiting() if celery_queued else None
            for run in runs:
                report.add(run, self._settle(run, now=now, waiting=waiting))
        return report

    # --- one run -----------------------------------------------------------------------------

    def _settle(self, run: StuckRun, *, now: datetime, waiting: int | None) -> Decision:
        try:
            decision = self._judge(run, now=now, waiting=waiting)
            if decision.action is Action.REDISPATCHED:
                return self._redispatch(run, decision)
            if decision.action is Action.ENDED_ERROR:
                return self._end(run, decision, now=now)
            return decision
        except CrucibleError as exc:
            return Decision(Action.FAILED, f"could not settle it: {exc}")

    def _judge(self, run: StuckRun, *, now: datetime, waiting: int | None) -> Decision:
        if run.status is Status.RUNNING:
            events = self.storage.events(run.eval_id)
            return decide_running(
                run,
                last_sign_of_life=last_sign_of_life(events, run.role),
                now=now,
                rules=self.rules,
            )
        if run.backend is Backend.LEGACY:
            state = self.legacy_queue.state_of(run.eval_id, run.role)
            events = self.storage.events(run.eval_id)
            return decide_legacy_queued(
                run,
                queue_state=state,
                redispatches=redispatches_of(events, run.role),
                rules=self.rules,
            )
        return decide_celery_queued(run, waiting_messages=waiting, now=now, rules=self.rules)

    def _redispatch(self, run: StuckRun, decision: Decision) -> Decision:
        """Record the re-dispatch on the run (while it is still queued), then enqueue it again.

        The record raises `attempts` by one, which storage keeps as an `eval.retried` event: that
        is how the re-dispatches are counted against the cap.
        """
        update = RunUpdate(
            status=Status.QUEUED,
            attempts=run.attempts + 1,
            detail={"failure": LOST_BY_QUEUE, "error": decision.why},
        )
        try:
            self.storage.update_run(run.eval_id, run.role, update)
        except Conflict:
            return Decision(Action.CHANGED_MEANWHILE, "it left queued meanwhile")
        if not self.legacy_queue.enqueue(task_of(run)):
            log.info("eval %s %s was enqueued again meanwhile", run.eval_id, run.role)
        return decision

    def _end(self, run: StuckRun, decision: Decision, *, now: datetime) -> Decision:
        """Stop its program (when running), park a dead letter, end the run `error`.

        The entry goes in before the run ends, as for every give-up, so an operator can replay
        it; a run that turns out to have moved on takes its entry back out.
        """
        if self._moved_on(run):
            return Decision(Action.CHANGED_MEANWHILE, "it moved on before it was ended")
        if run.status is Status.RUNNING:
            # Every role of the eval on every executor: the executor API kills by eval_id.
            self.executors.kill(run.eval_id)
        entry = self._dead_letter(run, decision.why, now=now)
        parked = self._park(entry)
        update = RunUpdate(status=Status.ERROR, reason=decision.why)
        try:
            self.storage.update_run(run.eval_id, run.role, update)
        except Conflict:
            if parked:
                self.dead_letters.remove(entry.id)
            return Decision(Action.CHANGED_MEANWHILE, "it ended by itself meanwhile")
        return decision

    # --- facts -------------------------------------------------------------------------------

    def _moved_on(self, run: StuckRun) -> bool:
        """Whether the run changed since it was listed (status, start, attempts)."""
        view = self.storage.get_evaluation(run.eval_id)
        current = next((r for r in view.runs if r.role is run.role), None)
        return current is None or (current.status, current.started_at, current.attempts) != (
            run.status,
            run.started_at,
            run.attempts,
        )

    def _celery_waiting(self) -> int | None:
        """Messages waiting in the evaluation queues on the broker; None when it cannot say."""
        try:
            pipe = self.broker.pipeline(transaction=False)
            for queue in EVALUATION_QUEUES:
                pipe.llen(queue.value)
            return sum(int(length) for length in pipe.execute())
        except redis.RedisError as exc:
            log.warning("reconciler: the broker could not be asked about its queues: %r", exc)
            return None

    def _dead_letter(self, run: StuckRun, reason: str, *, now: datetime) -> DeadLetter:
        return DeadLetter(
            eval_id=run.eval_id,
            role=run.role,
            backend=run.backend,
            task_name=TASK_EVALUATE,
            task_id=task_id_for(run.eval_id, run.role),
            kwargs={"task": task_of(run).model_dump(mode="json")},
            reason=reason,
            attempts=run.attempts,
            failed_at=now,
        )

    def _park(self, entry: DeadLetter) -> bool:
        try:
            return self.dead_letters.push(entry)
        except CrucibleError as exc:
            log.error("could not park eval %s in the dead-letter queue: %s", entry.eval_id, exc)
            return False
