"""Migration statistics built from plain rows: per-path counts, rates and latency percentiles.

Nothing here touches the database, so the arithmetic is unit-tested on hand-made rows; the
repository fetches the rows and the service hands them over. Percentiles are computed here rather
than in SQL because no percentile function is portable between SQLite and PostgreSQL.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import NamedTuple

from crucible_contracts.errors import InvalidInput
from crucible_contracts.models import (
    ComparisonOutcome,
    ComparisonStats,
    ComparisonView,
    LatencySummary,
    MigrationStats,
    PathStats,
)
from crucible_contracts.names import Backend, Role
from crucible_contracts.status import TERMINAL, Status

# Comparisons with these outcomes are agreements; `samples` shows only the others.
AGREEING = frozenset({ComparisonOutcome.MATCH, ComparisonOutcome.MATCH_AFTER_NORMALISATION})

_MS = timedelta(milliseconds=1)


class RunRow(NamedTuple):
    """The columns of one run that statistics need, in the order the repository selects them."""

    backend: Backend
    role: Role
    status: Status
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None

    @property
    def queue_wait_ms(self) -> float | None:
        """Created to started; None for a run that never started."""
        return duration_ms(self.created_at, self.started_at)

    @property
    def run_time_ms(self) -> float | None:
        """Started to completed; None unless it did both."""
        return duration_ms(self.started_at, self.completed_at)

    @property
    def end_to_end_ms(self) -> float | None:
        """Created to completed (any terminal status); None for a run that has not ended."""
        return duration_ms(self.created_at, self.completed_at)


def check_window(*, since: datetime, until: datetime) -> None:
    """Refuse (InvalidInput) a bound without a time zone, which would be read in nobody knows
    which one, and a window that ends before it starts."""
    for field, value in (("since", since), ("until", until)):
        if value.utcoffset() is None:
            raise InvalidInput(
                field, "needs a time zone, e.g. 2026-01-31T12:00:00Z", value=str(value)
            )
    if until < since:
        raise InvalidInput("until", "must not be before since", since=str(since), until=str(until))


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The nearest-rank `q`-th percentile: the smallest value with at least q % of the values at or
    below it, so always one of the values (never interpolated).

    `sorted_values` must be sorted ascending and not empty; `q` is in [0, 100] and 0 gives the
    smallest value. Raises ValueError otherwise.
    """
    if not sorted_values:
        raise ValueError("an empty sample has no percentile")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within [0, 100], not {q}")
    # Decimal keeps e.g. 99.9 % of 1000 at rank 999 exactly, where float arithmetic could give 1000.
    rank = math.ceil(Decimal(str(q)) * len(sorted_values) / 100)
    return sorted_values[max(rank, 1) - 1]


def latency_summary(durations_ms: Iterable[float]) -> LatencySummary:
    """Count and nearest-rank p50/p95/p99 of some durations; percentiles None when there are none."""
    values = sorted(durations_ms)
    if not values:
        return LatencySummary()
    return LatencySummary(
        count=len(values),
        p50_ms=percentile(values, 50),
        p95_ms=percentile(values, 95),
        p99_ms=percentile(values, 99),
    )


def duration_ms(start: datetime | None, end: datetime | None) -> float | None:
    """Milliseconds from `start` to `end`, None when either is missing.

    Timestamps may come from different storage replicas, whose clocks differ by a little; a
    negative duration is such a skew and counts as zero.
    """
    if start is None or end is None:
        return None
    return max((end - start) / _MS, 0.0)


def path_stats(backend: Backend, runs: Sequence[RunRow]) -> PathStats:
    """What the runs of one path (primary and shadow together) did; every status and role listed."""
    by_status = Counter(run.status for run in runs)
    terminal = sum(by_status[status] for status in TERMINAL)
    return PathStats(
        backend=backend,
        total=len(runs),
        terminal=terminal,
        by_status={status.value: by_status[status] for status in Status},
        by_role={role.value: sum(run.role is role for run in runs) for role in Role},
        success_rate=_share(by_status[Status.COMPLETED], terminal),
        error_rate=_share(by_status[Status.ERROR], terminal),
        queue_wait=_present(run.queue_wait_ms for run in runs),
        run_time=_present(run.run_time_ms for run in runs),
        end_to_end=_present(run.end_to_end_ms for run in runs),
    )


def comparison_stats(
    outcome_counts: Mapping[str, int], samples: Sequence[ComparisonView]
) -> ComparisonStats:
    """Counts and shares per outcome present, and the disagreeing `samples` the caller picked."""
    counts = {outcome: count for outcome, count in sorted(outcome_counts.items()) if count > 0}
    total = sum(counts.values())
    return ComparisonStats(
        total=total,
        by_outcome=counts,
        rates={outcome: count / total for outcome, count in counts.items()},
        samples=list(samples),
    )


def migration_stats(
    *,
    since: datetime,
    until: datetime,
    runs: Iterable[RunRow],
    outcome_counts: Mapping[str, int],
    samples: Sequence[ComparisonView],
) -> MigrationStats:
    """The whole report of a window: both paths always present (zeros when idle), comparisons."""
    by_backend: dict[Backend, list[RunRow]] = {backend: [] for backend in Backend}
    for run in runs:
        by_backend[run.backend].append(run)
    return MigrationStats(
        since=since,
        until=until,
        paths={backend: path_stats(backend, rows) for backend, rows in by_backend.items()},
        comparisons=comparison_stats(outcome_counts, samples),
    )


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _present(durations_ms: Iterable[float | None]) -> LatencySummary:
    return latency_summary(d for d in durations_ms if d is not None)
