"""`GET /stats` on real SQLite and PostgreSQL databases, through a real storage process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crucible_contracts.errors import InvalidInput
from crucible_contracts.models import ComparisonOutcome, LatencySummary
from crucible_contracts.names import Backend, Role
from crucible_contracts.status import Status
from crucible_storage.tables import utcnow

# A window well in the past, so that nothing the tests create "now" falls into it by accident.
SINCE = (utcnow() - timedelta(days=1)).replace(microsecond=0)
UNTIL = SINCE + timedelta(minutes=10)


def at(seconds: float) -> datetime:
    return SINCE + timedelta(seconds=seconds)


def a_run(store, eval_id: str, role: Role, status: Status, **times: float) -> None:
    """Walk the run of `role` to `status`, then pin its timestamps at those offsets from SINCE."""
    store.walk_to(eval_id, status, role=role)
    store.set_run_times(
        eval_id,
        role,
        created_at=at(times["created"]),
        started_at=at(times["started"]) if "started" in times else None,
        completed_at=at(times["completed"]) if "completed" in times else None,
    )


def compared(store, eval_id: str, outcome: ComparisonOutcome, seconds: float) -> None:
    store.compare(eval_id, outcome, differing_fields=["stdout"])
    store.set_compared_at(eval_id, at(seconds))


def test_a_window_counts_its_runs_and_comparisons_with_known_latencies(
    shared_store, shared_client
) -> None:
    # The module's other tests write nothing into [SINCE, UNTIL): the window is this test's.
    store = shared_store
    both = store.create(backend=Backend.LEGACY).eval_id
    store.add_shadow(both, Backend.CELERY)
    a_run(store, both, Role.PRIMARY, Status.COMPLETED, created=0, started=1, completed=3)
    a_run(store, both, Role.SHADOW, Status.COMPLETED, created=60, started=60.5, completed=61.5)
    failed = store.create(backend=Backend.LEGACY).eval_id
    a_run(store, failed, Role.PRIMARY, Status.FAILED, created=10, started=12, completed=22)
    never_started = store.create(backend=Backend.LEGACY).eval_id
    a_run(store, never_started, Role.PRIMARY, Status.ERROR, created=20, completed=25)
    shadow_running = store.create(backend=Backend.CELERY).eval_id
    store.add_shadow(shadow_running, Backend.LEGACY)
    a_run(store, shadow_running, Role.PRIMARY, Status.QUEUED, created=40)
    a_run(store, shadow_running, Role.SHADOW, Status.RUNNING, created=30, started=35)
    before = store.create(backend=Backend.CELERY).eval_id
    a_run(store, before, Role.PRIMARY, Status.ERROR, created=-1, started=-0.5, completed=0)
    at_the_end = store.create(backend=Backend.CELERY).eval_id
    a_run(store, at_the_end, Role.PRIMARY, Status.ERROR, created=600, started=601, completed=602)
    compared(store, both, ComparisonOutcome.MISMATCH, 300)
    compared(store, failed, ComparisonOutcome.MATCH, 360)
    compared(store, never_started, ComparisonOutcome.SHADOW_MISSING, 420)
    compared(store, shadow_running, ComparisonOutcome.MATCH_AFTER_NORMALISATION, 480)
    compared(store, before, ComparisonOutcome.MISMATCH, -60)
    compared(store, at_the_end, ComparisonOutcome.MISMATCH, 600)

    report = shared_client.stats(since=SINCE, until=UNTIL)
    one_sample = shared_client.stats(since=SINCE, until=UNTIL, samples=1)

    legacy, celery = report.paths[Backend.LEGACY], report.paths[Backend.CELERY]
    assert (report.since, report.until) == (SINCE, UNTIL)
    assert (legacy.total, legacy.terminal) == (4, 3)
    assert {k: v for k, v in legacy.by_status.items() if v} == {
        "running": 1,
        "completed": 1,
        "failed": 1,
        "error": 1,
    }
    assert legacy.by_role == {"primary": 3, "shadow": 1}
    assert (legacy.success_rate, legacy.error_rate) == (pytest.approx(1 / 3), pytest.approx(1 / 3))
    assert legacy.queue_wait == LatencySummary(count=3, p50_ms=2000, p95_ms=5000, p99_ms=5000)
    assert legacy.run_time == LatencySummary(count=2, p50_ms=2000, p95_ms=10000, p99_ms=10000)
    assert legacy.end_to_end == LatencySummary(count=3, p50_ms=5000, p95_ms=12000, p99_ms=12000)
    assert (celery.total, celery.terminal, celery.success_rate, celery.error_rate) == (2, 1, 1, 0)
    assert celery.by_role == {"primary": 1, "shadow": 1}
    assert (celery.queue_wait, celery.run_time, celery.end_to_end) == (
        LatencySummary(count=1, p50_ms=500, p95_ms=500, p99_ms=500),
        LatencySummary(count=1, p50_ms=1000, p95_ms=1000, p99_ms=1000),
        LatencySummary(count=1, p50_ms=1500, p95_ms=1500, p99_ms=1500),
    )
    assert report.comparisons.total == 4
    assert report.comparisons.by_outcome == {
        "match": 1,
        "match_after_normalisation": 1,
        "mismatch": 1,
        "shadow_missing": 1,
    }
    assert report.comparisons.rates == dict.fromkeys(report.comparisons.by_outcome, 0.25)
    assert [(c.eval_id, c.outcome) for c in report.comparisons.samples] == [
        (never_started, ComparisonOutcome.SHADOW_MISSING),
        (both, ComparisonOutcome.MISMATCH),
    ]
    assert report.comparisons.samples[1].differing_fields == ["stdout"]
    assert [c.eval_id for c in one_sample.comparisons.samples] == [never_started]


def test_until_defaults_to_now_and_an_empty_window_lists_both_paths(shared_client) -> None:
    long_ago = datetime(2000, 1, 1, tzinfo=UTC)

    empty = shared_client.stats(since=long_ago, until=long_ago + timedelta(days=1))
    asked_at = utcnow()
    up_to_now = shared_client.stats(since=long_ago)
    answered_at = utcnow()

    assert set(empty.paths) == {Backend.LEGACY, Backend.CELERY}
    assert {path.total for path in empty.paths.values()} == {0}
    assert {path.success_rate for path in empty.paths.values()} == {None}
    assert (empty.comparisons.total, empty.comparisons.samples) == (0, [])
    assert asked_at <= up_to_now.until <= answered_at


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "2026-01-01T00:00:00"}, "since"),
        ({"since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00"}, "until"),
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until"),
        ({"since": "yesterday"}, "since"),
        ({}, "since"),
        ({"since": "2026-01-01T00:00:00Z", "samples": -1}, "samples"),
        ({"since": "2026-01-01T00:00:00Z", "samples": 101}, "samples"),
    ],
)
def test_bad_windows_are_refused_with_422(shared_http, params, field) -> None:
    answer = shared_http.get("/stats", params=params)

    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "invalid_input"
    assert answer.json()["error"]["details"]["field"].endswith(field)


def test_the_client_passes_a_naive_datetime_on_for_storage_to_refuse(shared_client) -> None:
    with pytest.raises(InvalidInput) as refused:
        shared_client.stats(since=datetime(2026, 1, 1))

    assert refused.value.details["field"] == "since"
