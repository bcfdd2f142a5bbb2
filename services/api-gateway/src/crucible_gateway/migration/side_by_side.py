"""The operators' view of one shadowed evaluation: both runs, the recorded outcome, a bounded diff."""

from __future__ import annotations

import difflib
from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from crucible_contracts.models import ComparisonOutcome, ComparisonView, EvaluationView, RunView
from crucible_gateway.migration.comparison import compared_fields, primary_run, shadow_run
from crucible_gateway.migration.normalisation import OUTPUT_FIELDS, ComparisonRules

DIFF_MAX_LINES = 200
DIFF_MAX_LINE_CHARS = 500
# difflib is quadratic in the worst case; outputs (up to 1 MiB) are diffed on their first lines.
DIFF_MAX_INPUT_LINES = 10_000


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


def _readable(line: str) -> str:
    """A diff line that JSON can carry: the bytes `exact_text` kept as lone surrogates are
    spelled `\\xNN`, so the diff shows which bytes differ."""
    return line.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="backslashreplace")


def _clip(line: str) -> str:
    line = _readable(line)
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
    ours, theirs = compared_fields(primary), compared_fields(shadow)
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
