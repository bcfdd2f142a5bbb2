"""One fault under a stream of evaluations, start to verdict; then every fault of a list in turn."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from crucible_chaos import executions
from crucible_chaos.checks import FaultResult, Verdict, describe, tally, verdict
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
    # After the last fault, follow the evaluations stuck at their deadline this long.
    linger: float = 0.0

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
    """One fault's row as judged at its deadline, and the evaluations behind it, kept so that
    the executions can be counted again at the very end (a run lost at one fault may be executed
    again during a later one) and what became of the stuck ones can be told."""

    result: FaultResult
    submitted: list[Submitted]
    fault_at: float
    stuck: list[Submitted] = field(init=False)

    def __post_init__(self) -> None:
        # Taken at the deadline: following them later updates their views.
        self.stuck = [item for item in self.submitted if verdict(item) is Verdict.STUCK]

    def later(self, item: Submitted) -> str:
        """How a run stuck at the deadline stands now, and when it ended, from the fault."""
        if item.ended_at is None:
            age = time.time() - self.fault_at
            return f"later: {describe(item)}, still not ended {age:.0f} s after the fault"
        return (
            f"later: {describe(item)}, ended {item.ended_at - self.fault_at:.0f} s after the fault"
        )

    def final(self, starts: dict[executions.RunKey, executions.Starts], url: str) -> FaultResult:
        """The row with the executions counted over the executors' final logs, and a line per
        evaluation stuck at the deadline saying how it stands now (its verdict stays)."""
        follow(url, self.stuck, until=0)
        twice = executions.executed_twice(starts, (item.eval_id for item in self.submitted))
        later = [self.later(item) for item in self.stuck]
        new = [f"executed twice: {eval_id} {role}" for eval_id, role in twice]
        return replace(
            self.result,
            executed_twice=twice,
            details=[
                *self.result.details,
                *later,
                *(n for n in new if n not in self.result.details),
            ],
        )


class Supervisor:
    """What `make run` (scripts/supervise.sh) and compose (`restart: unless-stopped`) do for a
    deployment: every process of the suite that exits is started again. It watches from the
    fault's own restart on, so the fault's pause stays what the fault made it; each restart is
    noted under the row (a process the fault did not touch dying is worth knowing about)."""

    def __init__(self, suite: Suite, *, interval: float = 1.0) -> None:
        self.suite, self.interval = suite, interval
        self.notes: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="chaos-supervisor", daemon=True)

    def __enter__(self) -> Supervisor:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            for part in self.suite.parts():
                if part.alive() or self._stop.is_set():
                    continue
                code = part.proc.returncode if part.proc is not None else None
                log.warning("supervisor: %s exited (%s); starting it again", part.name, code)
                self.notes.append(f"supervisor restarted {part.name} (it exited with {code})")
                self.suite.starter.restart(part)


def run_fault(suite: Suite, gateway_url: str, fault: Fault, plan: Plan) -> Trial:
    """Stream, inject `fault`, wait `pause`, recover, stream on, then read every evaluation back
    until all have ended or the recovery deadline after the last one accepted has passed."""
    stream = Stream(gateway_url, rate=plan.rate, sleep=plan.sleep, timeout=plan.timeout).start()
    try:
        time.sleep(plan.before)
        fault_at = time.time()
        log.info("fault %s: %s", fault.name, fault.what)
        note = fault.inject(suite)
        time.sleep(plan.pause)
        fault.recover(suite)
        log.info("fault %s: recovered %.1fs after the fault", fault.name, time.time() - fault_at)
        with Supervisor(suite) as supervisor:
            time.sleep(plan.after)
            stream.stop()
            last = max((item.accepted_at for item in stream.submitted), default=fault_at)
            until = max(fault_at, last) + plan.recovery_deadline
            follow(gateway_url, stream.submitted, until=until)
    finally:
        stream.stop()
    twice = executions.executed_twice(
        starts_at_executors(suite), (item.eval_id for item in stream.submitted)
    )
    result = tally(
        fault.name,
        stream.submitted,
        refused=stream.refused,
        fault_at=fault_at,
        twice=twice,
        deadline=plan.recovery_deadline,
    )
    result.details[0:0] = [f"fault: {note}"] * bool(note) + supervisor.notes
    return Trial(result, stream.submitted, fault_at)


def run_faults(
    suite: Suite,
    gateway_url: str,
    names: Iterable[str],
    plan: Plan,
    *,
    heal: Callable[[], None],
    report: Callable[[FaultResult], None] = lambda _: None,
) -> list[FaultResult]:
    """Each fault of `names` in turn (the suite healed before each); then the stuck evaluations
    are followed for `plan.linger` seconds and the rows counted again over the executors' final
    logs. A verdict stays the one of the fault's own deadline."""
    trials = []
    for name in names:
        heal()
        trials.append(run_fault(suite, gateway_url, FAULTS[name], plan))
        report(trials[-1].result)
    if plan.linger:
        stuck = [item for trial in trials for item in trial.stuck]
        follow(gateway_url, stuck, until=time.time() + plan.linger, interval=5)
    final = starts_at_executors(suite)
    return [trial.final(final, gateway_url) for trial in trials]
