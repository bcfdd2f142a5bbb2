"""Shadow comparison: decide the outcome of a primary and a shadow run, and when one is due.

Pure functions of their arguments: the sweep that finds evaluations to compare and the storage
that records each comparison once are the caller's business. `now` is always a parameter. The
normalisation rules are in `normalisation`, the side-by-side view for operators in `side_by_side`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from crucible_contracts.models import (
    ComparisonOutcome,
    ComparisonRecord,
    EvaluationView,
    RunView,
)
from crucible_contracts.names import Role
from crucible_contracts.output import exact_bytes
from crucible_contracts.status import Status
from crucible_gateway.migration.normalisation import OUTPUT_FIELDS, ComparisonRules, normalise

COMPARED_FIELDS = ("status", "exit_code", "stdout", "stderr")
# A comparison's notion of "failed": the platform could not run it (not a program's failure).
_FAILED = Status.ERROR


def exact_text(text: str | None, base64_bytes: str | None) -> str:
    """A stream's exact bytes as text that equals another's exactly when the bytes do: UTF-8,
    each byte of an invalid sequence kept as a lone surrogate (U+DC80-U+DCFF, "surrogateescape").

    Two outputs that differ only in invalid bytes both read as U+FFFD in `output`; here they
    stay different, and the normalisation rules (regular expressions over text) still apply.
    """
    return exact_bytes(text, base64_bytes).decode("utf-8", errors="surrogateescape")


def compared_fields(run: RunView) -> dict[str, Any]:
    """The values of COMPARED_FIELDS for `run`: outputs as `exact_text` (missing ones empty)."""
    return {
        "status": run.status,
        "exit_code": run.exit_code,
        "stdout": exact_text(run.output, run.output_base64),
        "stderr": exact_text(run.error, run.error_base64),
    }


def _millis(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds() * 1000, 3)


def _side(run: RunView) -> dict[str, Any]:
    """What the record keeps of one run: enough to read its duration without the run itself."""
    return {
        "backend": run.backend.value,
        "status": run.status.value,
        "exit_code": run.exit_code,
        "reason": run.reason,
        "runtime_ms": run.runtime_ms,
        "queue_wait_ms": _millis(run.created_at, run.started_at),
        "duration_ms": _millis(run.created_at, run.completed_at),
    }


def _details(
    primary: RunView, shadow: RunView, rules: ComparisonRules, normalised: list[str]
) -> dict[str, Any]:
    return {
        "primary": _side(primary),
        "shadow": _side(shadow),
        "rules_version": rules.rules_version,
        "normalised_fields": normalised,
    }


def _outcome(
    primary: Status, shadow: Status, raw_diff: list[str], remaining: list[str]
) -> ComparisonOutcome:
    if primary is _FAILED and shadow is _FAILED:
        return ComparisonOutcome.BOTH_FAILED
    if primary is _FAILED:
        return ComparisonOutcome.PRIMARY_FAILED_ONLY
    if shadow is _FAILED:
        return ComparisonOutcome.SHADOW_FAILED_ONLY
    if not raw_diff:
        return ComparisonOutcome.MATCH
    if not remaining:
        return ComparisonOutcome.MATCH_AFTER_NORMALISATION
    return ComparisonOutcome.MISMATCH


_FAILED_OUTCOMES = frozenset(
    {
        ComparisonOutcome.BOTH_FAILED,
        ComparisonOutcome.PRIMARY_FAILED_ONLY,
        ComparisonOutcome.SHADOW_FAILED_ONLY,
    }
)


def compare(primary: RunView, shadow: RunView, rules: ComparisonRules) -> ComparisonRecord:
    """The comparison of two ended runs of one evaluation.

    Fields are compared in COMPARED_FIELDS order; stdout and stderr also after normalisation.
    `differing_fields` are those still different after normalisation, except for the *_failed
    outcomes, where they are the raw differences (a platform error has nothing to normalise).
    Raises ValueError when either run has not ended.
    """
    for role, run in (("primary", primary), ("shadow", shadow)):
        if not run.status.is_terminal():
            raise ValueError(f"the {role} run has not ended (status {run.status.value})")
    ours, theirs = compared_fields(primary), compared_fields(shadow)
    raw_diff = [name for name in COMPARED_FIELDS if ours[name] != theirs[name]]
    remaining = [
        name
        for name in raw_diff
        if name not in OUTPUT_FIELDS
        or normalise(ours[name], rules, name) != normalise(theirs[name], rules, name)
    ]
    normalised = [name for name in raw_diff if name not in remaining]
    outcome = _outcome(primary.status, shadow.status, raw_diff, remaining)
    return ComparisonRecord(
        outcome=outcome,
        differing_fields=raw_diff if outcome in _FAILED_OUTCOMES else remaining,
        details=_details(primary, shadow, rules, normalised),
    )


def missing(primary: RunView, shadow: RunView, rules: ComparisonRules) -> ComparisonRecord:
    """The record of a shadow run that did not end in time; its status is kept as it was."""
    return ComparisonRecord(
        outcome=ComparisonOutcome.SHADOW_MISSING,
        details=_details(primary, shadow, rules, []),
    )


def shadow_deadline(evaluation: EvaluationView, rules: ComparisonRules) -> datetime:
    """The time after which a shadow run that has not ended counts as missing: the evaluation's
    own time limit plus the grace the shadow gets for waiting in its low-priority queue."""
    return evaluation.created_at + timedelta(
        seconds=evaluation.timeout + rules.shadow_grace_seconds
    )


def is_overdue(
    evaluation: EvaluationView, shadow: RunView, rules: ComparisonRules, now: datetime
) -> bool:
    """True when `shadow` has not ended and `now` is past the shadow deadline."""
    return not shadow.status.is_terminal() and now > shadow_deadline(evaluation, rules)


# The evaluation's flattened fields are its primary run's.
_PRIMARY_FIELDS = set(RunView.model_fields) - {"role"}


def primary_run(evaluation: EvaluationView) -> RunView:
    """The evaluation's primary run; rebuilt from its flattened fields when it is not listed."""
    for run in evaluation.runs:
        if run.role is Role.PRIMARY:
            return run
    return RunView(role=Role.PRIMARY, **evaluation.model_dump(include=_PRIMARY_FIELDS))


def shadow_run(evaluation: EvaluationView) -> RunView | None:
    """The evaluation's shadow run, or None when it was not shadowed."""
    return next((run for run in evaluation.runs if run.role is Role.SHADOW), None)


def due_comparison(
    evaluation: EvaluationView, rules: ComparisonRules, now: datetime
) -> ComparisonRecord | None:
    """What the sweep records for `evaluation` now: the comparison when both runs have ended,
    `shadow_missing` when the primary has ended and the shadow is overdue, else None (also for
    an evaluation without a shadow run)."""
    primary, shadow = primary_run(evaluation), shadow_run(evaluation)
    if shadow is None or not primary.status.is_terminal():
        return None
    if shadow.status.is_terminal():
        return compare(primary, shadow, rules)
    if is_overdue(evaluation, shadow, rules, now):
        return missing(primary, shadow, rules)
    return None
