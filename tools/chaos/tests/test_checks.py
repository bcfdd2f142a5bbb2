"""The verdict on each evaluation, the recovery time and the pass/fail of one fault."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crucible_chaos.checks import Verdict, recovery_seconds, tally, verdict
from crucible_chaos.stream import Expected, Submitted, program

FAULT_AT = 1_000_000.0
RIGHT = Expected("completed", "tok\n", 0)


def stamp(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


def run(
    status: str,
    *,
    role: str = "primary",
    output: str | None = "tok\n",
    exit_code=0,
    ended=FAULT_AT + 3,
):
    return {
        "role": role,
        "backend": "celery",
        "status": status,
        "output": output,
        "exit_code": exit_code,
        "completed_at": stamp(ended) if status not in ("queued", "running") else None,
    }


def item(*runs: dict, accepted_at: float = FAULT_AT - 1, expected: Expected = RIGHT) -> Submitted:
    view = {"runs": list(runs)} if runs else None
    return Submitted("e" * 32, expected, accepted_at, "celery", view=view)


@pytest.mark.parametrize(
    ("runs", "want"),
    [
        ([run("completed")], Verdict.CORRECT),
        ([run("completed"), run("completed", role="shadow")], Verdict.CORRECT),
        ([run("error", output=None, exit_code=None)], Verdict.OTHER),
        ([run("completed", output="someone else's\n")], Verdict.OTHER),
        (
            [run("completed"), run("error", role="shadow", output=None, exit_code=None)],
            Verdict.OTHER,
        ),
        ([run("running")], Verdict.STUCK),
        ([run("completed"), run("queued", role="shadow")], Verdict.STUCK),
        ([], Verdict.STUCK),
    ],
)
def test_verdict_needs_every_run_to_end_with_the_programs_own_result(runs, want):
    assert verdict(item(*runs)) is want


def test_a_program_that_fails_by_itself_is_correct_when_it_ends_failed():
    expected = Expected("failed", "tok\n", 3)
    assert verdict(item(run("failed", exit_code=3), expected=expected)) is Verdict.CORRECT
    assert verdict(item(run("error", exit_code=None), expected=expected)) is Verdict.OTHER


def test_generated_programs_print_a_token_of_their_own():
    (code_a, a), (code_b, b) = program(sleep=0.1, fails=False), program(sleep=0.1, fails=True)
    assert a.output != b.output and a.output.strip() in code_a
    assert "SystemExit(3)" in code_b
    assert (a.status, b.status, b.exit_code) == ("completed", "failed", 3)


def test_recovery_is_the_last_end_among_those_accepted_before_the_fault():
    items = [
        item(run("completed", ended=FAULT_AT + 4)),
        item(run("completed", ended=FAULT_AT + 9)),
        item(run("completed", ended=FAULT_AT + 30), accepted_at=FAULT_AT + 1),
    ]
    assert recovery_seconds(items, fault_at=FAULT_AT) == pytest.approx(9)
    assert recovery_seconds([*items, item(run("running"))], fault_at=FAULT_AT) is None
    assert recovery_seconds([], fault_at=FAULT_AT) == 0.0


def test_a_fault_passes_only_without_loss_double_execution_stuck_or_late_recovery():
    good = [item(run("completed"))]
    assert tally("x", good, refused=2, fault_at=FAULT_AT, twice=[], deadline=35).passed
    twice = tally(
        "x", good, refused=0, fault_at=FAULT_AT, twice=[("e" * 32, "primary")], deadline=35
    )
    assert not twice.passed and twice.details == [f"executed twice: {'e' * 32} primary"]
    late = tally(
        "x",
        [item(run("completed", ended=FAULT_AT + 40))],
        refused=0,
        fault_at=FAULT_AT,
        twice=[],
        deadline=35,
    )
    assert late.slow and not late.passed
    lost = tally(
        "x", [item(run("error", output=None))], refused=0, fault_at=FAULT_AT, twice=[], deadline=35
    )
    assert (lost.correct, lost.other, lost.passed) == (0, 1, False)
    assert lost.details[0].startswith("other: " + "e" * 32)
    stuck = tally("x", [item(run("running"))], refused=0, fault_at=FAULT_AT, twice=[], deadline=35)
    assert (stuck.stuck, stuck.recovery, stuck.passed) == (1, None, False)
    assert not tally("x", [], refused=5, fault_at=FAULT_AT, twice=[], deadline=35).passed
