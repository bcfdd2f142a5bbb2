"""Migration statistics from plain rows: nearest-rank percentiles, rates, latencies, the window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from crucible_contracts.errors import InvalidInput
from crucible_contracts.ids import new_eval_id
from crucible_contracts.models import ComparisonOutcome, ComparisonView, LatencySummary
from crucible_contracts.names import Backend, Role
from crucible_contracts.status import Status
from crucible_storage.stats import (
    RunRow,
    check_window,
    duration_ms,
    latency_summary,
    migration_stats,
    percentile,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EVAL_ID = new_eval_id()
ONE_TO_TEN = [float(n) for n in range(1, 11)]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run(
    backend: Backend,
    status: Status,
    *,
    role: Role = Role.PRIMARY,
    created: float = 0,
    started: float | None = None,
    completed: float | None = None,
) -> RunRow:
    """A run created `created` s after T0 that started and completed at those offsets (or not)."""
    return RunRow(
        backend=backend,
        role=role,
        status=status,
        created_at=at(created),
        started_at=None if started is None else at(started),
        completed_at=None if completed is None else at(completed),
    )


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([7.0], 50, 7.0),
        ([7.0], 99, 7.0),
        (ONE_TO_TEN, 0, 1.0),
        (ONE_TO_TEN, 10, 1.0),
        (ONE_TO_TEN, 11, 2.0),
        (ONE_TO_TEN, 50, 5.0),
        (ONE_TO_TEN, 51, 6.0),
        (ONE_TO_TEN, 95, 10.0),
        (ONE_TO_TEN, 100, 10.0),
        ([1.0, 2.0, 3.0], 50, 2.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
        ([float(n) for n in range(1, 21)], 95, 19.0),
        ([float(n) for n in range(1, 101)], 99, 99.0),
        ([float(n) for n in range(1, 1001)], 99.9, 999.0),
    ],
)
def test_percentile_is_the_nearest_rank_value(values, q, expected) -> None:
    assert percentile(values, q) == expected


@pytest.mark.parametrize(("values", "q"), [([], 50), ([1.0], -1), ([1.0], 100.5)])
def test_percentile_refuses_an_empty_sample_and_out_of_range_ranks(values, q) -> None:
    with pytest.raises(ValueError):
        percentile(values, q)


def test_a_latency_summary_sorts_its_input_and_is_empty_without_samples() -> None:
    summary = latency_summary([30.0, 10.0, 20.0])

    assert summary == LatencySummary(count=3, p50_ms=20.0, p95_ms=30.0, p99_ms=30.0)
    assert latency_summary([]) == LatencySummary(count=0, p50_ms=None, p95_ms=None, p99_ms=None)


def test_durations_need_both_ends_and_clock_skew_counts_as_zero() -> None:
    assert duration_ms(at(0), at(1.5)) == 1500.0
    assert duration_ms(at(0), None) is None
    assert duration_ms(None, at(1)) is None
    assert duration_ms(at(1), at(0.999)) == 0.0


def test_each_path_gets_counts_rates_and_latencies_of_its_own_runs() -> None:
    runs = [
        run(Backend.LEGACY, Status.COMPLETED, started=1, completed=3),
        run(Backend.LEGACY, Status.FAILED, created=10, started=12, completed=22),
        run(Backend.LEGACY, Status.ERROR, created=20, completed=25),  # never started
        run(Backend.LEGACY, Status.RUNNING, role=Role.SHADOW, created=30, started=35),
        run(Backend.CELERY, Status.COMPLETED, role=Role.SHADOW, started=0.5, completed=1.5),
        run(Backend.CELERY, Status.QUEUED, created=40),
    ]

    report = migration_stats(since=T0, until=at(600), runs=runs, outcome_counts={}, samples=[])

    legacy, celery = report.paths[Backend.LEGACY], report.paths[Backend.CELERY]
    assert (legacy.total, legacy.terminal) == (4, 3)
    assert legacy.by_status == {
        "queued": 0,
        "running": 1,
        "completed": 1,
        "failed": 1,
        "timeout": 0,
        "cancelled": 0,
        "error": 1,
    }
    assert legacy.by_role == {"primary": 3, "shadow": 1}
    assert (legacy.success_rate, legacy.error_rate) == (pytest.approx(1 / 3), pytest.approx(1 / 3))
    assert legacy.queue_wait == LatencySummary(count=3, p50_ms=2000, p95_ms=5000, p99_ms=5000)
    assert legacy.run_time == LatencySummary(count=2, p50_ms=2000, p95_ms=10000, p99_ms=10000)
    assert legacy.end_to_end == LatencySummary(count=3, p50_ms=5000, p95_ms=12000, p99_ms=12000)
    assert (celery.total, celery.terminal, celery.success_rate, celery.error_rate) == (2, 1, 1, 0)
    assert celery.by_role == {"primary": 1, "shadow": 1}
    assert (celery.queue_wait.p50_ms, celery.run_time.p50_ms, celery.end_to_end.p50_ms) == (
        500,
        1000,
        1500,
    )


def test_an_idle_window_still_lists_both_paths_with_no_rates() -> None:
    report = migration_stats(since=T0, until=at(60), runs=[], outcome_counts={}, samples=[])

    assert set(report.paths) == {Backend.LEGACY, Backend.CELERY}
    for backend, path in report.paths.items():
        assert (path.backend, path.total, path.terminal) == (backend, 0, 0)
        assert (path.success_rate, path.error_rate) == (None, None)
        assert set(path.by_status.values()) == {0}
        assert path.end_to_end == LatencySummary()
    assert (report.comparisons.total, report.comparisons.by_outcome) == (0, {})
    assert (report.comparisons.rates, report.comparisons.samples) == ({}, [])
    assert (report.since, report.until) == (T0, at(60))


def test_comparison_rates_are_shares_of_the_outcomes_present() -> None:
    sample = ComparisonView(
        eval_id=EVAL_ID,
        outcome=ComparisonOutcome.MISMATCH,
        differing_fields=["stdout"],
        details={},
        created_at=at(5),
    )

    report = migration_stats(
        since=T0,
        until=at(60),
        runs=[],
        outcome_counts={"match": 6, "mismatch": 1, "shadow_failed_only": 1, "both_failed": 0},
        samples=[sample],
    )

    assert report.comparisons.total == 8
    assert report.comparisons.by_outcome == {"match": 6, "mismatch": 1, "shadow_failed_only": 1}
    assert report.comparisons.rates == {
        "match": 0.75,
        "mismatch": 0.125,
        "shadow_failed_only": 0.125,
    }
    assert report.comparisons.samples == [sample]


@pytest.mark.parametrize(
    ("since", "until", "field"),
    [
        (datetime(2026, 3, 1), at(60), "since"),
        (T0, datetime(2026, 3, 2), "until"),
        (at(60), T0, "until"),
    ],
)
def test_a_window_needs_time_zones_and_must_not_end_before_it_starts(since, until, field) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_window(since=since, until=until)

    assert refused.value.field == field


def test_an_empty_window_and_other_time_zones_are_accepted() -> None:
    two_hours_east = T0.astimezone(timezone(timedelta(hours=2)))

    check_window(since=T0, until=T0)
    check_window(since=two_hours_east, until=at(1))
