"""One round of the reconciler: find stuck runs in storage, judge each one, act, report.

The judgements are `stuck`'s; this module gathers the facts they need (what the run's path says
of it, the run's events) and carries them out: submit a lost run to its path again, or stop the
program, park a dead letter and end the run `error`. A run that moves on by itself meanwhile is
left as it is. Each path answers for itself (`Path.holds`, `Path.may_redispatch`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from crucible_contracts.errors import Conflict, CrucibleError
from crucible_contracts.models import DeadLetter, RunUpdate, StuckRun
from crucible_contracts.names import TASK_EVALUATE, task_id_for
from crucible_contracts.status import Status
from crucible_gateway import metrics
from crucible_gateway.housekeeping.stuck import (
    CONSUMER_LOST,
    LOST_BY_QUEUE,
    Action,
    Decision,
    Rules,
    decide_queued,
    decide_running,
    last_sign_of_life,
    lease_ran_out,
    redispatches_of,
    task_of,
)
from crucible_gateway.paths import Holding, Path, Paths
from crucible_runtime.clients import ExecutorPool, StorageClient
from crucible_runtime.dead_letters import DeadLetterStore

log = logging.getLogger(__name__)

# Runs acted on that a round's report lists one by one (the counts cover them all).
MAX_LISTED = 100


@dataclass
class Report:
    """What one round did: counts per action, the runs acted on (not those left waiting), and
    whether it stopped early because this replica lost the lead."""

    counts: Counter[str] = field(default_factory=Counter)
    runs: list[dict[str, Any]] = field(default_factory=list)
    stopped: bool = False

    def add(self, run: StuckRun, decision: Decision) -> None:
        self.counts[decision.action.value] += 1
        metrics.HOUSEKEEPING_RUNS.labels(decision.action.value).inc()
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
        """How many runs the round looked at, counts per action, the runs acted on."""
        counts = {action.value: self.counts[action.value] for action in Action}
        return {
            "checked": sum(self.counts.values()),
            **counts,
            "runs": self.runs,
            "stopped": self.stopped,
        }


def _always() -> bool:
    return True


@dataclass
class Reconciler:
    storage: StorageClient
    paths: Paths
    # Every executor of both paths (None when the gateway knows none): a stuck run's program
    # may be on any of them.
    executors: ExecutorPool | None
    dead_letters: DeadLetterStore
    rules: Rules
    batch: int = 100

    def run(self, now: datetime, *, proceed: Callable[[], bool] = _always) -> Report:
        """One round over the stuck runs of each path, the oldest first (`batch` per path).

        `proceed` is asked before each run is settled; once it says no (this replica lost the
        lead) the round stops there. Raises when storage cannot list the runs; a service that
        fails while one run is settled counts that run `failed`, and the next round tries again.
        """
        report = Report()
        for path in self.paths:
            queued_after = timedelta(seconds=self.rules.queued_after[path.backend])
            runs = self.storage.stuck_runs(
                queued_before=now - queued_after,
                running_before=self.rules.running_before(now),
                backend=path.backend,
                limit=self.batch,
            )
            for run in runs:
                if not proceed():
                    report.stopped = True
                    return report
                report.add(run, self._settle(run, path, now=now))
        return report

    # --- one run -----------------------------------------------------------------------------

    def _settle(self, run: StuckRun, path: Path, *, now: datetime) -> Decision:
        try:
            decision = self._judge(run, path, now=now)
            if decision.action is Action.REDISPATCHED:
                return self._redispatch(run, path, decision)
            if decision.action is Action.ENDED_ERROR:
                return self._end(run, decision, now=now)
            return decision
        except CrucibleError as exc:
            return Decision(Action.FAILED, f"could not settle it: {exc}")

    def _judge(self, run: StuckRun, path: Path, *, now: datetime) -> Decision:
        if run.status is Status.RUNNING:
            events = self.storage.events(run.eval_id)
            sign = last_sign_of_life(events, run.role)
            # Its path is asked only about a run past its lease (one call per run truly stuck).
            if lease_ran_out(run, last_sign_of_life=sign, now=now, rules=self.rules):
                holding = path.works_on(run.eval_id, run.role)
            else:
                holding = Holding(False, "not asked: within its lease")
            return decide_running(
                run,
                last_sign_of_life=sign,
                holding=holding,
                may_redispatch=path.may_redispatch,
                redispatches=redispatches_of(events, run.role),
                now=now,
                rules=self.rules,
            )
        holding = path.holds(run.eval_id, run.role)
        # A run its path still holds is only waiting: its events are read only when it is not
        # (a backlog of held runs costs one call each per round, not two).
        redispatches = (
            0 if holding.held else redispatches_of(self.storage.events(run.eval_id), run.role)
        )
        return decide_queued(
            run,
            holding=holding,
            may_redispatch=path.may_redispatch,
            redispatches=redispatches,
            now=now,
            rules=self.rules,
        )

    def _redispatch(self, run: StuckRun, path: Path, decision: Decision) -> Decision:
        """Record the re-dispatch on the run (in the status it is listed with), then submit it
        again.

        The record raises `attempts` by one, which storage keeps as an `eval.retried` event: that
        is how the re-dispatches are counted against the cap, and, for a running run, a sign of
        life that renews its lease while the new copy is on its way.
        """
        failure = CONSUMER_LOST if run.status is Status.RUNNING else LOST_BY_QUEUE
        update = RunUpdate(
            status=run.status,
            attempts=run.attempts + 1,
            detail={"failure": failure, "error": decision.why},
        )
        try:
            self.storage.update_run(run.eval_id, run.role, update)
        except Conflict:
            return Decision(Action.CHANGED_MEANWHILE, f"it left {run.status} meanwhile")
        try:
            path.submit(task_of(run))
        except Conflict:
            log.info("eval %s %s was submitted again meanwhile", run.eval_id, run.role)
        return decision

    def _end(self, run: StuckRun, decision: Decision, *, now: datetime) -> Decision:
        """Stop its program (when running), park a dead letter, end the run `error`.

        The entry goes in before the run ends, as for every give-up, so an operator can replay
        it (to the run's own path: the entry carries its backend); a run that turns out to have
        moved on takes its entry back out.
        """
        if self._moved_on(run):
            return Decision(Action.CHANGED_MEANWHILE, "it moved on before it was ended")
        if run.status is Status.RUNNING and self.executors is not None:
            # The executor's own timer ended the program at its timeout, long before this
            # (timeout + grace). One /kill per executor is cheap insurance against an
            # executor that lost its timer: no program outlives a run that ends here.
            self.executors.kill(run.eval_id, run.role)
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
