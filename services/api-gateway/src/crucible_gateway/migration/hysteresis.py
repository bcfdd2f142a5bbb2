"""The guard's hysteresis: when a breach is a blip and when it is acted on. Pure functions.

Two rules, both needed to tell a blip (a 5 s worker restart) from a regression:

- **Recent confirmation** (`confirm_recent`): a check that breaches over the guard's window also
  has to breach over the runs of the last `recent_seconds`, against the same threshold. The
  window keeps a blip's slow runs for minutes; the recent runs show at once that it is over.
  A breached check whose recent runs are within the threshold is `recovered`, which counts as
  inconclusive; with no recent run at all there is no sign of recovery and the breach stands.
- **Streak** (`next_streak`): the breach must hold for `breach_after` consecutive evaluations.
  A pass or an inconclusive evaluation ends the streak, and so does a new settings document
  version (the runs judged so far were made under other settings). The streak is stored beside
  the decisions in the state Redis, so a new leader carries it on.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from crucible_contracts.models import MigrationStats, PathStats
from crucible_contracts.names import Backend
from crucible_gateway.migration.guard import (
    AGREEMENTS,
    MIN_P95_MS,
    Check,
    Decision,
    GuardSettings,
    Verdict,
    decide,
)


class GuardStreak(BaseModel):
    """Consecutive breaching evaluations of one settings document version."""

    document_version: int
    breaches: int = 0
    since: datetime | None = None  # when the first breach of the streak was evaluated


def next_streak(
    previous: GuardStreak | None, *, decision: Decision | None, document_version: int, at: datetime
) -> GuardStreak:
    """The streak after one evaluation. `decision` None means the guard did not judge (disabled,
    or Celery takes no traffic): like a pass, it ends the streak."""
    if previous is None or previous.document_version != document_version:
        previous = GuardStreak(document_version=document_version)
    if decision != "breach":
        return GuardStreak(document_version=document_version)
    return GuardStreak(
        document_version=document_version,
        breaches=previous.breaches + 1,
        since=previous.since or at,
    )


def breach_is_due(streak: GuardStreak, settings: GuardSettings) -> bool:
    """Whether the breach has held long enough to act on: on the `breach_after`-th in a row."""
    return streak.breaches >= settings.breach_after


def confirm_recent(verdict: Verdict, *, window: MigrationStats, recent: MigrationStats) -> Verdict:
    """`verdict` (over `window`) with each breached check checked against `recent`, the runs of
    the last `recent_seconds`: still above its threshold → breach stands; within it → recovered."""
    checks = [_confirm(check, window=window, recent=recent) for check in verdict.checks]
    return Verdict(decision=decide(checks), checks=checks)


def _confirm(check: Check, *, window: MigrationStats, recent: MigrationStats) -> Check:
    if check.verdict != "breach" or check.threshold is None:
        return check
    value, count = _recent_value(check.name, window=window, recent=recent)
    samples = {**check.samples, "recent": count}
    if value is None:
        return check.model_copy(
            update={
                "samples": samples,
                "detail": f"{check.detail}; no recent run to show recovery",
            }
        )
    if value > check.threshold:
        return check.model_copy(
            update={
                "recent_value": value,
                "samples": samples,
                "detail": f"{check.detail}; still above over the last {count} recent samples",
            }
        )
    return check.model_copy(
        update={
            "verdict": "recovered",
            "recent_value": value,
            "samples": samples,
            "detail": f"{check.detail}; but the last {count} recent samples are within "
            f"(recent value {value:.3g}): not counted as a breach",
        }
    )


def _path(stats: MigrationStats, backend: Backend) -> PathStats:
    return stats.paths.get(backend) or PathStats(backend=backend)


def _recent_value(
    name: str, *, window: MigrationStats, recent: MigrationStats
) -> tuple[float | None, int]:
    """The check's measure over the recent runs and how many runs it rests on (None: none)."""
    celery = _path(recent, Backend.CELERY)
    if name == "error_rate":
        if not celery.terminal:
            return None, 0
        errors = celery.by_status.get("error", 0)
        return errors / celery.terminal, celery.terminal
    if name == "mismatch_rate":
        compared = recent.comparisons
        if not compared.total:
            return None, 0
        disagreements = sum(
            count for outcome, count in compared.by_outcome.items() if outcome not in AGREEMENTS
        )
        return disagreements / compared.total, compared.total
    if name == "p95_latency_ratio":
        # Against legacy's p95 over the whole window: its recent runs may be too few to judge by.
        legacy = _path(window, Backend.LEGACY).end_to_end.p95_ms
        ours = celery.end_to_end
        if not ours.count or ours.p95_ms is None or legacy is None:
            return None, 0
        return max(ours.p95_ms, MIN_P95_MS) / max(legacy, MIN_P95_MS), ours.count
    return None, 0
