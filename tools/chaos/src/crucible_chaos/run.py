"""One fault under a stream of evaluations, start to verdict; then every fault of a list in turn."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from crucible_chaos import executions
from crucible_chaos.checks import FaultResult, tally
from crucible_chaos.faults import FAULTS, Fault, Suite
from crucible_chaos.stream import Stream, Submitted, follow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """How long each phase of a fault lasts (seconds), and the stream's shape."""

    before: float = 5.0  # the stream runs this long before the fault
    pause: float = 2.0  # dead for this long before the restart begins
    after: float = 5.0  # the stream goes on this long after the restart
    rate: float = 2.0  # evaluations submitted per second
    sleep: tuple[float, float] = (0.5, 2.0)  # each program sleeps this long, uniformly drawn
    timeout: float = 5.0  # each program's time limit
    deadline: float | None = None  # recovery deadline; default 30 s + `timeout` (issue 12)

    @property
    def recovery_deadline(self) -> float:
        return self.deadline if self.deadline is not None else 30.0 + self.timeout


def starts_at_executors(suite: Suite) -> dict[executions.RunKey, executions.Starts]:
    """Program starts per run, over every executor's whole log."""
    return executions.merge(
        executions.starts_in_log(executor.log_path.read_text(errors="replace"))
        for executor in suite.executors
    )


@dataclass
class Trial:
    """What one fault left behind, kept so that its row can be counted again at the very end
    (a run lost at one fault may be executed again during a later one)."""

    fault: Fault
    submitted: list[Submitted]
    refused: int
    fault_at: float
    deadline: float

    def result(self, starts: dict[executions.RunKey, executions.Starts]) -> FaultResult:
        twice = executions.executed_twice(starts, (item.eval_id for item in self.submitted))
        return tally(
            self.fault.name,
            self.submitted,
            refused=self.refused,
            fault_at=self.fault_at,
            twice=twice,
            deadline=self.deadline,
        )


def run_fault(suite: Suite, gateway_url: str, fault: Fault, plan: Plan) -> Trial:
    """Stream, inject `fault`, wait `pause`, recover, stream on, then read every evaluation back
    until all have ended or the recovery deadline after the last one accepted has passed."""
    stream = Stream(gateway_url, rate=plan.rate, sleep=plan.sleep, timeout=plan.timeout).start()
    try:
        time.sleep(plan.before)
        fault_at = time.time()
        log.info("fault %s: %s", fault.name, fault.what)
        fault.inject(suite)
        time.sleep(plan.pause)
        fault.recover(suite)
        log.info("fault %s: recovered %.1fs after the fault", fault.name, time.time() - fault_at)
        time.sleep(plan.after)
    finally:
        stream.stop()
    deadline = plan.recovery_deadline
    last = max((item.accepted_at for item in stream.submitted), default=fault_at)
    follow(gateway_url, stream.submitted, until=max(fault_at, last) + deadline)
    return Trial(fault, stream.submitted, stream.refused, fault_at, deadline)


def run_faults(
    suite: Suite,
    gateway_url: str,
    names: Iterable[str],
    plan: Plan,
    *,
    heal: Callable[[], None],
    report: Callable[[FaultResult], None] = lambda _: None,
) -> list[FaultResult]:
    """Each fault of `names` in turn (the suite healed before each); the rows are counted again
    over the executors' final logs once every fault is done."""
    trials = []
    for name in names:
        heal()
        trial = run_fault(suite, gateway_url, FAULTS[name], plan)
        trials.append(trial)
        report(trial.result(starts_at_executors(suite)))
    final = starts_at_executors(suite)
    return [trial.result(final) for trial in trials]
