"""The checks of one fault, as plain functions of what was submitted, read back and counted."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from crucible_chaos.executions import RunKey
from crucible_chaos.stream import Submitted


class Verdict(StrEnum):
    CORRECT = "correct"  # every run ended with the program's own result
    OTHER = "other"  # ended, but some run with another result (`error`, a wrong output)
    STUCK = "stuck"  # some run not terminal by the deadline (or never read back)


def verdict(item: Submitted) -> Verdict:
    """Whether every run of `item` (primary and shadow) ended with its expected result."""
    if not item.ended:
        return Verdict.STUCK
    want = item.expected
    for run in item.runs:
        got = (run["status"], run.get("output"), run.get("exit_code"))
        if got != (want.status, want.output, want.exit_code):
            return Verdict.OTHER
    return Verdict.CORRECT


def describe(item: Submitted) -> str:
    """One line saying how `item` ended, for the details under the table."""
    runs = ", ".join(
        f"{run['role']} on {run['backend']} {run['status']} "
        f"(attempts {run.get('attempts')}, reason {run.get('reason')!r})"
        for run in item.runs
    )
    return f"{item.eval_id}: {runs or 'never read back'}"


def recovery_seconds(submitted: Iterable[Submitted], *, fault_at: float) -> float | None:
    """Seconds from the fault until the last evaluation accepted before it ended; None when one
    of those has not ended (it is stuck), 0.0 when none was accepted before the fault."""
    before = [item for item in submitted if item.accepted_at <= fault_at]
    ends = [item.ended_at for item in before]
    if any(end is None for end in ends):
        return None
    return max((end - fault_at for end in ends), default=0.0)


@dataclass
class FaultResult:
    """One row of the table, and the evidence behind its failures."""

    fault: str
    accepted: int
    refused: int
    backends: Counter[str]
    shadowed: int
    correct: int
    other: int
    stuck: int
    executed_twice: list[RunKey]
    recovery: float | None
    deadline: float
    details: list[str] = field(default_factory=list)

    @property
    def slow(self) -> bool:
        return self.recovery is None or self.recovery > self.deadline

    @property
    def passed(self) -> bool:
        """No loss, no double execution, nothing stuck, recovered within the deadline."""
        return (
            self.accepted > 0
            and self.other == 0
            and self.stuck == 0
            and not self.executed_twice
            and not self.slow
        )


def tally(
    fault: str,
    submitted: list[Submitted],
    *,
    refused: int,
    fault_at: float,
    twice: list[RunKey],
    deadline: float,
) -> FaultResult:
    """The row for `fault` from the evaluations of its stream and the runs executed twice."""
    verdicts = {item.eval_id: verdict(item) for item in submitted}
    counts = Counter(verdicts.values())
    wrong = [item for item in submitted if verdicts[item.eval_id] is not Verdict.CORRECT]
    return FaultResult(
        fault=fault,
        accepted=len(submitted),
        refused=refused,
        backends=Counter(item.backend for item in submitted),
        shadowed=sum(len(item.runs) > 1 for item in submitted),
        correct=counts[Verdict.CORRECT],
        other=counts[Verdict.OTHER],
        stuck=counts[Verdict.STUCK],
        executed_twice=twice,
        recovery=recovery_seconds(submitted, fault_at=fault_at),
        deadline=deadline,
        details=[f"{verdicts[item.eval_id]}: {describe(item)}" for item in wrong]
        + [f"executed twice: {eval_id} {role}" for eval_id, role in twice],
    )
