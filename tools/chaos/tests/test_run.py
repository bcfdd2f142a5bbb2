"""A fault's trial keeps what was stuck at its deadline, whatever becomes of it later."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from crucible_chaos.checks import FaultResult
from crucible_chaos.run import Trial
from crucible_chaos.stream import Expected, Submitted

FAULT_AT = 1_000_000.0


def run(status: str, ended: float | None = None) -> dict:
    completed = datetime.fromtimestamp(ended, UTC).isoformat() if ended else None
    return {
        "role": "primary",
        "backend": "legacy",
        "status": status,
        "output": "t\n",
        "exit_code": 0,
        "attempts": 1,
        "reason": None,
        "completed_at": completed,
    }


def test_the_stuck_are_those_of_the_deadline_and_later_says_how_they_ended():
    stuck = Submitted(
        "a" * 32,
        Expected("completed", "t\n", 0),
        FAULT_AT - 1,
        "legacy",
        view={"runs": [run("running")]},
    )
    done = Submitted(
        "b" * 32,
        Expected("completed", "t\n", 0),
        FAULT_AT - 1,
        "legacy",
        view={"runs": [run("completed", FAULT_AT + 2)]},
    )
    result = FaultResult("x", 2, 0, Counter(), 0, 1, 0, 1, [], None, 35.0)
    trial = Trial(result, [stuck, done], FAULT_AT)
    assert trial.stuck == [stuck]
    assert "still not ended" in trial.later(stuck)

    stuck.view = {"runs": [run("error", FAULT_AT + 230)]}

    assert trial.stuck == [stuck]
    assert trial.later(stuck).endswith(
        "primary on legacy error (attempts 1, reason None), ended 230 s after the fault"
    )
