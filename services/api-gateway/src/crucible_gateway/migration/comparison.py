"""Shadow comparison: normalise two runs' outputs, decide the outcome, lay the runs side by side.

Pure functions of their arguments: the sweep that finds evaluations to compare and the storage
that records each comparison once are the caller's business. `now` is always a parameter.
"""

from __future__ import annotations

import difflib
import re
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from crucible_contracts.models import (
    ComparisonOutcome,
    ComparisonRecord,
    ComparisonView,
    EvaluationView,
    RunView,
)
from crucible_contracts.names import Role
from crucible_contracts.status import Status

MAX_RULES = 50
MAX_PATTERN_CHARS = 500
MAX_REPLACEMENT_CHARS = 200
DIFF_MAX_LINES = 200
DIFF_MAX_LINE_CHARS = 500
# difflib is quadratic in the worst case; outputs (up to 1 MiB) are diffed on their first lines.
DIFF_MAX_INPUT_LINES = 10_000

OutputField = Literal["stdout", "stderr"]
OUTPUT_FIELDS: tuple[OutputField, ...] = ("stdout", "stderr")
COMPARED_FIELDS = ("status", "exit_code", "stdout", "stderr")
# A comparison's notion of "failed": the platform could not run it (not a program's failure).
_FAILED = Status.ERROR


class NormalisationRule(BaseModel):
    """One rewrite applied to an output before comparing: it removes noise that says nothing
    about the path (addresses, temporary paths, times), so that only real differences count.

    `mask` replaces every match of `pattern` by `replacement`, taken literally (no group
    references, so a replacement can never fail at comparison time).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100)
    kind: Literal["strip_trailing_whitespace", "mask"]
    pattern: str | None = Field(default=None, max_length=MAX_PATTERN_CHARS)
    replacement: str = Field(default="<masked>", max_length=MAX_REPLACEMENT_CHARS)
    fields: list[OutputField] = Field(default_factory=lambda: list(OUTPUT_FIELDS), min_length=1)

    @model_validator(mode="after")
    def _pattern_fits_kind(self) -> NormalisationRule:
        if self.kind == "mask":
            if not self.pattern:
                raise ValueError(f"rule {self.name!r}: a mask needs a pattern")
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"rule {self.name!r}: pattern does not compile: {exc}") from exc
        elif self.pattern is not None:
            raise ValueError(f"rule {self.name!r}: {self.kind} takes no pattern")
        return self

    def apply(self, text: str) -> str:
        if self.kind == "strip_trailing_whitespace":
            return "\n".join(line.rstrip() for line in text.split("\n")).rstrip()
        # re caches compiled patterns; a rule set is at most MAX_RULES of them.
        return re.compile(self.pattern or "").sub(lambda _: self.replacement, text)


# The order keeps normalise idempotent: temporary paths go last, because the other masks'
# replacements can turn the character next to a `/tmp` into a boundary (as in `0x1f/tmp`).
DEFAULT_RULES: tuple[NormalisationRule, ...] = (
    NormalisationRule(name="trailing_whitespace", kind="strip_trailing_whitespace"),
    NormalisationRule(
        name="hex_addresses", kind="mask", pattern=r"\b0x[0-9a-fA-F]+\b", replacement="0x<addr>"
    ),
    NormalisationRule(
        name="timestamps",
        kind="mask",
        # ISO-8601 date-times (T or space, optional seconds, fraction and zone), or HH:MM:SS(.f).
        pattern=(
            r"(?<![\d:])(?:\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?"
            r"(?:Z|[+-]\d{2}(?::?\d{2})?)?|\d{2}:\d{2}:\d{2}(?:\.\d+)?)(?![\d:])"
        ),
        replacement="<time>",
    ),
    NormalisationRule(
        name="temporary_paths",
        kind="mask",
        # /tmp, /var/tmp and anything below them, up to a quote, space, colon or bracket.
        pattern=r"(?<![\w./-])(?:/var)?/tmp\b(?:/[\w.@%+=~-]*)*",
        replacement="<tmp>",
    ),
)


class ComparisonRules(BaseModel):
    """The comparison settings stored in the migration document; `rules_version` is recorded
    with every comparison so that a comparison always names the rules that judged it."""

    model_config = ConfigDict(extra="forbid")

    rules_version: int = Field(default=1, ge=1)
    rules: list[NormalisationRule] = Field(
        default_factory=lambda: list(DEFAULT_RULES), max_length=MAX_RULES
    )
    shadow_grace_seconds: float = Field(default=120, gt=0, allow_inf_nan=False)

    @field_validator("rules")
    @classmethod
    def _names_are_unique(cls, rules: list[NormalisationRule]) -> list[NormalisationRule]:
        names = [rule.name for rule in rules]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"rule names must be unique, repeated: {', '.join(repeated)}")
        return rules


def normalise(text: str, rules: ComparisonRules, field: OutputField) -> str:
    """`text` after every rule that applies to `field`, in the order the rules are listed."""
    if field not in OUTPUT_FIELDS:
        raise ValueError(f"field must be one of {', '.join(OUTPUT_FIELDS)}, got {field!r}")
    for rule in rules.rules:
        if field in rule.fields:
            text = rule.apply(text)
    return text


def _compared(run: RunView) -> dict[str, Any]:
    return {
        "status": run.status,
        "exit_code": run.exit_code,
        "stdout": run.output or "",
        "stderr": run.error or "",
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
    ours, theirs = _compared(primary), _compared(shadow)
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


class SideBySide(BaseModel):
    """`GET /api/eval/{eval_id}/comparison`: both runs, the recorded outcome and a readable diff.

    `outcome` is "pending" until a comparison is recorded. `diff` has an entry for stdout and
    for stderr only where the raw outputs differ (noise included: this is what each path said).
    """

    eval_id: str
    outcome: ComparisonOutcome | Literal["pending"]
    differing_fields: list[str]
    normalised_fields: list[str]
    rules_version: int
    recorded_at: datetime | None
    primary: RunView
    shadow: RunView | None
    diff: dict[str, str]


def _clip(line: str) -> str:
    if len(line) <= DIFF_MAX_LINE_CHARS:
        return line
    return f"{line[:DIFF_MAX_LINE_CHARS]}… ({len(line) - DIFF_MAX_LINE_CHARS} more characters)"


def _input_lines(text: str) -> tuple[list[str], bool]:
    lines = text.splitlines()
    return lines[:DIFF_MAX_INPUT_LINES], len(lines) > DIFF_MAX_INPUT_LINES


def unified_diff(before: str, after: str, *, before_name: str, after_name: str) -> str:
    """A unified diff of two outputs, at most DIFF_MAX_LINES lines of at most
    DIFF_MAX_LINE_CHARS characters, with a note when anything was cut."""
    old, old_cut = _input_lines(before)
    new, new_cut = _input_lines(after)
    lines = [
        _clip(line) for line in difflib.unified_diff(old, new, before_name, after_name, lineterm="")
    ]
    if not lines:
        lines = [f"--- {before_name}", f"+++ {after_name}"]
        if not (old_cut or new_cut):
            lines.append("(the outputs differ only in line endings or a final newline)")
    if len(lines) > DIFF_MAX_LINES:
        lines = [*lines[:DIFF_MAX_LINES], f"(diff cut at {DIFF_MAX_LINES} of {len(lines)} lines)"]
    if old_cut or new_cut:
        lines.append(f"(only the first {DIFF_MAX_INPUT_LINES} lines of each output were diffed)")
    return "\n".join(lines)


def _diffs(primary: RunView, shadow: RunView) -> dict[str, str]:
    ours, theirs = _compared(primary), _compared(shadow)
    return {
        name: unified_diff(
            ours[name],
            theirs[name],
            before_name=f"primary ({primary.backend.value})",
            after_name=f"shadow ({shadow.backend.value})",
        )
        for name in OUTPUT_FIELDS
        if ours[name] != theirs[name]
    }


def side_by_side(
    evaluation: EvaluationView, comparison: ComparisonView | None, rules: ComparisonRules
) -> SideBySide:
    """Both runs of `evaluation` with the recorded comparison, or "pending" before there is one.

    `rules_version` is the one the comparison was recorded with, else the current `rules`'.
    """
    primary, shadow = primary_run(evaluation), shadow_run(evaluation)
    details = comparison.details if comparison is not None else {}
    return SideBySide(
        eval_id=evaluation.eval_id,
        outcome=comparison.outcome if comparison is not None else "pending",
        differing_fields=comparison.differing_fields if comparison is not None else [],
        normalised_fields=list(details.get("normalised_fields", [])),
        rules_version=int(details.get("rules_version", rules.rules_version)),
        recorded_at=comparison.created_at if comparison is not None else None,
        primary=primary,
        shadow=shadow,
        diff=_diffs(primary, shadow) if shadow is not None else {},
    )
