"""The table `make chaos` prints."""

from __future__ import annotations

from collections import Counter

from crucible_chaos.checks import FaultResult
from crucible_chaos.table import markdown


def result(fault: str, **fields) -> FaultResult:
    base = dict(
        accepted=10,
        refused=0,
        backends=Counter(legacy=6, celery=4),
        shadowed=3,
        correct=10,
        other=0,
        stuck=0,
        executed_twice=[],
        recovery=4.25,
        deadline=35.0,
    )
    return FaultResult(fault=fault, **{**base, **fields})


def test_one_row_per_fault_with_its_counts_and_verdict_then_the_evidence():
    text = markdown(
        [
            result("storage"),
            result(
                "celery-child",
                correct=9,
                executed_twice=[("a" * 32, "primary")],
                details=["executed twice: " + "a" * 32 + " primary"],
            ),
            result("queue-service", correct=8, stuck=2, recovery=None),
        ]
    )
    lines = text.splitlines()
    assert lines[0].startswith("| fault | accepted | legacy/celery/shadow | refused | correct")
    assert lines[2] == "| storage | 10 | 6/4/3 | 0 | 10 | 0 | 0 | 0 | 4.2 | pass |"
    assert lines[3] == "| celery-child | 10 | 6/4/3 | 0 | 9 | 0 | 0 | 1 | 4.2 | FAIL |"
    assert lines[4] == "| queue-service | 10 | 6/4/3 | 0 | 8 | 0 | 2 | 0 | > 35 (stuck) | FAIL |"
    assert "\ncelery-child:\n" in text
    assert "  executed twice: " + "a" * 32 + " primary" in text


def test_a_recovery_past_the_deadline_is_marked_late():
    assert "| 50.0 (late) | FAIL |" in markdown([result("x", recovery=50.0)])


def test_long_evidence_is_cut_and_says_how_much_more_there_was():
    text = markdown([result("x", details=[f"line {n}" for n in range(12)])], details=8)
    assert "  line 7" in text and "  line 8" not in text
    assert "  ... and 4 more" in text
