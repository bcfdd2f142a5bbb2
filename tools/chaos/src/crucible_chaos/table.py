"""The table `make chaos` prints: one row per fault, then the evidence behind each failure."""

from __future__ import annotations

from collections.abc import Iterable

from crucible_chaos.checks import FaultResult

HEADER = (
    "fault",
    "accepted",
    "legacy/celery/shadow",
    "refused",
    "correct",
    "other",
    "stuck",
    "executed twice",
    "recovery s",
    "result",
)


def _recovery(result: FaultResult) -> str:
    if result.recovery is None:
        return f"> {result.deadline:.0f} (stuck)"
    late = " (late)" if result.recovery > result.deadline else ""
    return f"{result.recovery:.1f}{late}"


def row(result: FaultResult) -> tuple[str, ...]:
    mix = f"{result.backends['legacy']}/{result.backends['celery']}/{result.shadowed}"
    return (
        result.fault,
        str(result.accepted),
        mix,
        str(result.refused),
        str(result.correct),
        str(result.other),
        str(result.stuck),
        str(len(result.executed_twice)),
        _recovery(result),
        "pass" if result.passed else "FAIL",
    )


def markdown(results: Iterable[FaultResult], *, details: int = 8) -> str:
    """A Markdown table, then up to `details` lines per fault: what the fault hit, the
    evaluations that did not end right, the runs executed twice, what became of the stuck."""
    results = list(results)
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row(result)) + " |" for result in results]
    for result in results:
        if result.details:
            lines += ["", f"{result.fault}:"]
            lines += [f"  {line}" for line in result.details[:details]]
            if len(result.details) > details:
                lines.append(f"  ... and {len(result.details) - details} more")
    return "\n".join(lines)
