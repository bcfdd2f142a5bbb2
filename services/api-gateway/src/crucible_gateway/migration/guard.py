"""The rollback guard and the ramp: judge a window of migration statistics, and decide the share.

Pure functions of their arguments. Reading the statistics, writing the new share (a versioned
write with an audit entry) and running only on the leader replica are the caller's business.
The guard never promotes on missing data: too few samples is `inconclusive` (never read as a
pass), and a ramp moves only on a `pass`. Whether a breach lasts long enough to act on is
`migration.hysteresis`'s business.
"""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from crucible_contracts.limits import INT32_MAX, MAX_WINDOW_SECONDS
from crucible_contracts.models import ComparisonOutcome, MigrationStats, PathStats
from crucible_contracts.names import Backend

# `recovered`: breached over the window, but the most recent runs are within the threshold again
# (see `hysteresis.confirm_recent`); it counts as inconclusive, never as a pass.
CheckVerdict = Literal["pass", "breach", "inconclusive", "recovered", "skip"]
Decision = Literal["pass", "breach", "inconclusive"]

# Outcomes where the two paths agreed: the same answer, or both unable to run it.
AGREEMENTS = frozenset(
    {
        ComparisonOutcome.MATCH,
        ComparisonOutcome.MATCH_AFTER_NORMALISATION,
        ComparisonOutcome.BOTH_FAILED,
    }
)
# A p95 below this is taken as this, so that the latency ratio never divides by zero.
MIN_P95_MS = 1.0


class GuardSettings(BaseModel):
    """Thresholds of the rollback guard. `evaluate` judges whatever `enabled` says; whether to
    act on a breach is the caller's decision.

    Hysteresis (`migration.hysteresis`): a breach is acted on only once it has held for
    `breach_after` consecutive evaluations (one per SUPERVISOR_INTERVAL, 1 s by default), and a
    breach only counts while the runs of the last `recent_seconds` still breach the same
    threshold. Defaults: a 5 s worker restart shows as a breach for about `recent_seconds` plus
    its backlog (≈ 10-15 evaluations) and is not acted on; a Celery path that fails every run is
    rolled back `breach_after` evaluations (20 s) after `min_samples` of its runs have ended.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    enabled: bool = True
    window_seconds: float = Field(default=300, gt=0, le=MAX_WINDOW_SECONDS, allow_inf_nan=False)
    min_samples: int = Field(default=20, ge=1, le=INT32_MAX)
    max_error_rate_increase: float = Field(default=0.05, ge=0, le=1)
    max_mismatch_rate: float = Field(default=0.05, ge=0, le=1)
    max_p95_latency_ratio: float = Field(default=3.0, gt=1, le=1e6, allow_inf_nan=False)
    rollback_to: Literal["zero", "previous_step"] = "zero"
    breach_after: int = Field(default=20, ge=1, le=10_000)
    recent_seconds: float = Field(default=10, gt=0, le=MAX_WINDOW_SECONDS, allow_inf_nan=False)


class RampSettings(BaseModel):
    """A promotion schedule: Celery shares in increasing order, each held `hold_seconds`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    active: bool = False
    steps: list[float] = Field(default_factory=lambda: [0.1, 0.5, 0.9, 1.0], min_length=1)
    hold_seconds: float = Field(default=300, gt=0, le=MAX_WINDOW_SECONDS, allow_inf_nan=False)

    @field_validator("steps")
    @classmethod
    def _steps_increase_within_the_unit_interval(cls, steps: list[float]) -> list[float]:
        for step in steps:
            if not 0 < step <= 1:
                raise ValueError(f"every step must be a share in (0, 1], got {step}")
        for low, high in pairwise(steps):
            if not low < high:
                raise ValueError(f"steps must strictly increase, got {low} then {high}")
        return steps


class Check(BaseModel):
    """One guard check's finding; `detail` is a sentence with the numbers behind the verdict."""

    name: str
    verdict: CheckVerdict
    value: float | None = None
    threshold: float | None = None
    # The same measure over the last `recent_seconds` only (breached checks; see hysteresis).
    recent_value: float | None = None
    samples: dict[str, int] = Field(default_factory=dict)
    detail: str


class Verdict(BaseModel):
    """All checks of one evaluation and the decision they add up to."""

    decision: Decision
    checks: list[Check]

    def summary(self) -> str:
        """One line for the audit log: every check that did not pass with its numbers (every
        check when all passed)."""
        named = [
            check
            for check in self.checks
            if check.verdict in ("breach", "inconclusive", "recovered")
        ]
        if not named:
            named = [check for check in self.checks if check.verdict == "pass"]
        parts = [f"{check.name} {check.verdict}: {check.detail}" for check in named]
        return f"{self.decision}: " + ("; ".join(parts) if parts else "no checks ran")


def _path(stats: MigrationStats, backend: Backend) -> PathStats:
    return stats.paths.get(backend) or PathStats(backend=backend)


def _error_rate(path: PathStats) -> float:
    if path.error_rate is not None:
        return path.error_rate
    return path.by_status.get("error", 0) / path.terminal if path.terminal else 0.0


def _errors(path: PathStats) -> int:
    return path.by_status.get("error", round(_error_rate(path) * path.terminal))


def check_error_rate(stats: MigrationStats, settings: GuardSettings) -> Check:
    """Celery's error rate against legacy's (or 0 when legacy has too few runs to judge by)."""
    celery, legacy = _path(stats, Backend.CELERY), _path(stats, Backend.LEGACY)
    samples = {"celery_terminal": celery.terminal, "legacy_terminal": legacy.terminal}
    if celery.terminal < settings.min_samples:
        return Check(
            name="error_rate",
            verdict="inconclusive",
            samples=samples,
            detail=f"celery has {celery.terminal} ended runs in the window, "
            f"needs {settings.min_samples}",
        )
    if legacy.terminal >= settings.min_samples:
        baseline = _error_rate(legacy)
        basis = (
            f"legacy's {baseline:.1%} ({_errors(legacy)}/{legacy.terminal})"
            f" + {settings.max_error_rate_increase:.1%}"
        )
    else:
        baseline = 0.0
        basis = (
            f"a baseline of 0 (legacy has only {legacy.terminal} ended runs, "
            f"needs {settings.min_samples}) + {settings.max_error_rate_increase:.1%}"
        )
    value, threshold = _error_rate(celery), baseline + settings.max_error_rate_increase
    verdict: CheckVerdict = "breach" if value > threshold else "pass"
    relation = "above" if verdict == "breach" else "within"
    return Check(
        name="error_rate",
        verdict=verdict,
        value=value,
        threshold=threshold,
        samples=samples,
        detail=f"celery error rate {value:.1%} ({_errors(celery)}/{celery.terminal}) is "
        f"{relation} {threshold:.1%} = {basis}",
    )


def check_mismatch_rate(stats: MigrationStats, settings: GuardSettings, *, shadow: bool) -> Check:
    """The share of comparisons where the paths disagreed; only judged in shadow mode."""
    if not shadow:
        return Check(name="mismatch_rate", verdict="skip", detail="not in shadow mode")
    comparisons = stats.comparisons
    disagreements = sum(
        count for outcome, count in comparisons.by_outcome.items() if outcome not in AGREEMENTS
    )
    samples = {"comparisons": comparisons.total, "disagreements": disagreements}
    if comparisons.total < settings.min_samples:
        return Check(
            name="mismatch_rate",
            verdict="inconclusive",
            samples=samples,
            detail=f"{comparisons.total} comparisons in the window, needs {settings.min_samples}",
        )
    value, threshold = disagreements / comparisons.total, settings.max_mismatch_rate
    verdict: CheckVerdict = "breach" if value > threshold else "pass"
    relation = "above" if verdict == "breach" else "within"
    return Check(
        name="mismatch_rate",
        verdict=verdict,
        value=value,
        threshold=threshold,
        samples=samples,
        detail=f"mismatch rate {value:.1%} ({disagreements}/{comparisons.total} comparisons "
        f"disagreed) is {relation} {threshold:.1%}",
    )


def check_p95_latency_ratio(stats: MigrationStats, settings: GuardSettings) -> Check:
    """Celery's end-to-end p95 over legacy's (a p95 under MIN_P95_MS counts as MIN_P95_MS)."""
    celery = _path(stats, Backend.CELERY).end_to_end
    legacy = _path(stats, Backend.LEGACY).end_to_end
    samples = {"celery_end_to_end": celery.count, "legacy_end_to_end": legacy.count}
    short = [
        f"{name} has {summary.count} timed runs"
        for name, summary in (("celery", celery), ("legacy", legacy))
        if summary.count < settings.min_samples or summary.p95_ms is None
    ]
    if short or celery.p95_ms is None or legacy.p95_ms is None:
        return Check(
            name="p95_latency_ratio",
            verdict="inconclusive",
            samples=samples,
            detail=f"{' and '.join(short)} in the window, needs {settings.min_samples} each",
        )
    ours, theirs = max(celery.p95_ms, MIN_P95_MS), max(legacy.p95_ms, MIN_P95_MS)
    value, threshold = ours / theirs, settings.max_p95_latency_ratio
    verdict: CheckVerdict = "breach" if value > threshold else "pass"
    relation = "above" if verdict == "breach" else "within"
    return Check(
        name="p95_latency_ratio",
        verdict=verdict,
        value=value,
        threshold=threshold,
        samples=samples,
        detail=f"p95 end-to-end celery {celery.p95_ms:.0f} ms / legacy {legacy.p95_ms:.0f} ms "
        f"= {value:.2f}x is {relation} {threshold:g}x",
    )


def evaluate(stats: MigrationStats, settings: GuardSettings, *, shadow: bool) -> Verdict:
    """Every check on one window; the decision is `decide`'s."""
    checks = [
        check_error_rate(stats, settings),
        check_mismatch_rate(stats, settings, shadow=shadow),
        check_p95_latency_ratio(stats, settings),
    ]
    return Verdict(decision=decide(checks), checks=checks)


def decide(checks: list[Check]) -> Decision:
    """Any breach → breach, else any inconclusive or recovered check → inconclusive, else pass."""
    verdicts = {check.verdict for check in checks}
    if "breach" in verdicts:
        return "breach"
    if verdicts & {"inconclusive", "recovered"}:
        return "inconclusive"
    return "pass"


def rollback_target(current: float, guard: GuardSettings, ramp: RampSettings) -> float:
    """The share to set back to on a breach: 0, or the largest ramp step below `current` (0 when
    there is none). Always below `current` when `current` > 0."""
    if guard.rollback_to == "zero":
        return 0.0
    return max((step for step in ramp.steps if step < current), default=0.0)


def ramp_next(current: float, ramp: RampSettings) -> float | None:
    """The smallest step above `current`, or None at or beyond the last step."""
    return min((step for step in ramp.steps if step > current), default=None)


def ramp_due(
    *,
    current: float,
    ramp: RampSettings,
    verdict: Verdict,
    step_started_at: datetime,
    now: datetime,
) -> float | None:
    """The share to promote to now, or None: only while the ramp is active, the guard passed
    (never when inconclusive) and the current step has been held `hold_seconds`."""
    if not ramp.active or verdict.decision != "pass":
        return None
    if (now - step_started_at).total_seconds() < ramp.hold_seconds:
        return None
    return ramp_next(current, ramp)
