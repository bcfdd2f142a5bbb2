"""Unit tests of the guard's hysteresis: the breach streak and the confirmation on recent runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crucible_contracts.models import (
    ComparisonStats,
    LatencySummary,
    MigrationStats,
    PathStats,
)
from crucible_contracts.names import Backend
from crucible_gateway.migration.guard import GuardSettings, evaluate
from crucible_gateway.migration.hysteresis import (
    GuardStreak,
    breach_is_due,
    confirm_recent,
    next_streak,
)

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
GUARD = GuardSettings(breach_after=3)


def at(second: int) -> datetime:
    return T0 + timedelta(seconds=second)


def run_streak(decisions: list[tuple[str | None, int]]) -> list[GuardStreak]:
    """Feed (decision, document_version) pairs one per second; the streak after each."""
    streak, seen = None, []
    for second, (decision, version) in enumerate(decisions):
        streak = next_streak(streak, decision=decision, document_version=version, at=at(second))
        seen.append(streak)
    return seen


# --- the streak ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("decisions", "breaches"),
    [
        ([("breach", 1)] * 3, [1, 2, 3]),
        ([("breach", 1), ("breach", 1), ("pass", 1), ("breach", 1)], [1, 2, 0, 1]),
        ([("breach", 1), ("breach", 1), ("inconclusive", 1), ("breach", 1)], [1, 2, 0, 1]),
        ([("breach", 1), ("breach", 1), (None, 1), ("breach", 1)], [1, 2, 0, 1]),
        ([("breach", 1), ("breach", 1), ("breach", 2), ("breach", 2)], [1, 2, 1, 2]),
        ([("pass", 1), ("inconclusive", 1), ("pass", 2)], [0, 0, 0]),
    ],
    ids=[
        "counts-consecutive-breaches",
        "a-pass-resets",
        "an-inconclusive-resets",
        "not-judged-resets",
        "a-new-document-version-resets",
        "no-breach-no-streak",
    ],
)
def test_the_streak_counts_consecutive_breaches_of_one_version(decisions, breaches):
    assert [streak.breaches for streak in run_streak(decisions)] == breaches


def test_the_streak_remembers_when_it_began_and_forgets_it_on_a_reset():
    streaks = run_streak([("pass", 1), ("breach", 1), ("breach", 1), ("pass", 1)])
    assert [streak.since for streak in streaks] == [None, at(1), at(1), None]
    assert {streak.document_version for streak in streaks} == {1}


def test_a_stored_streak_of_another_version_is_not_carried_on():
    old = GuardStreak(document_version=4, breaches=9, since=T0)
    new = next_streak(old, decision="breach", document_version=5, at=at(1))
    assert (new.document_version, new.breaches, new.since) == (5, 1, at(1))


@pytest.mark.parametrize(
    ("breach_after", "rolls_back_on"),
    [(1, 1), (3, 3), (20, 20)],
)
def test_the_guard_acts_on_the_nth_consecutive_breach_and_not_before(breach_after, rolls_back_on):
    settings = GuardSettings(breach_after=breach_after)
    streaks = run_streak([("breach", 1)] * (breach_after + 2))
    due = [breach_is_due(streak, settings) for streak in streaks]
    assert due.index(True) + 1 == rolls_back_on
    assert not any(due[: rolls_back_on - 1])


def test_a_blip_shorter_than_breach_after_never_acts():
    # 2 breaches, a pass, 2 breaches: never 3 in a row.
    decisions = [("breach", 1)] * 2 + [("pass", 1)] + [("breach", 1)] * 2
    assert not any(breach_is_due(streak, GUARD) for streak in run_streak(decisions))


def test_the_defaults_act_within_a_minute_at_one_evaluation_a_second():
    defaults = GuardSettings()
    assert 5 < defaults.breach_after <= 30
    assert defaults.recent_seconds < defaults.breach_after


# --- confirmation on the most recent runs --------------------------------------------------------


def path(
    backend: Backend, *, terminal: int = 100, errors: int = 0, p95: float = 100, timed: int = 100
) -> PathStats:
    return PathStats(
        backend=backend,
        total=terminal,
        terminal=terminal,
        by_status={"completed": terminal - errors, "error": errors},
        error_rate=errors / terminal if terminal else None,
        end_to_end=LatencySummary(
            count=timed, p50_ms=p95 / 2 if timed else None, p95_ms=p95 if timed else None
        ),
    )


def stats(celery: PathStats, legacy: PathStats | None = None) -> MigrationStats:
    return MigrationStats(
        since=T0,
        until=at(300),
        paths={Backend.CELERY: celery, Backend.LEGACY: legacy or path(Backend.LEGACY)},
        comparisons=ComparisonStats(),
    )


# A window where Celery's p95 is 50x legacy's (slow runs from a worker restart, say).
SLOW_WINDOW = stats(path(Backend.CELERY, p95=5000))


@pytest.mark.parametrize(
    ("recent", "check_verdict", "decision"),
    [
        (stats(path(Backend.CELERY, terminal=8, p95=4000, timed=8)), "breach", "breach"),
        (stats(path(Backend.CELERY, terminal=8, p95=120, timed=8)), "recovered", "inconclusive"),
        (stats(path(Backend.CELERY, terminal=0, timed=0)), "breach", "breach"),
    ],
    ids=["still-slow", "fast-again", "no-recent-run"],
)
def test_a_latency_breach_counts_only_while_the_recent_runs_are_still_slow(
    recent, check_verdict, decision
):
    verdict = evaluate(SLOW_WINDOW, GUARD, shadow=False)
    assert verdict.decision == "breach"

    confirmed = confirm_recent(verdict, window=SLOW_WINDOW, recent=recent)

    latency = next(c for c in confirmed.checks if c.name == "p95_latency_ratio")
    assert (latency.verdict, confirmed.decision) == (check_verdict, decision)
    assert latency.value == pytest.approx(50)
    assert latency.threshold == GUARD.max_p95_latency_ratio


def test_a_recovered_check_keeps_its_numbers_and_says_why_it_did_not_count():
    recent = stats(path(Backend.CELERY, terminal=8, p95=120, timed=8))
    verdict = confirm_recent(
        evaluate(SLOW_WINDOW, GUARD, shadow=False), window=SLOW_WINDOW, recent=recent
    )
    latency = next(c for c in verdict.checks if c.name == "p95_latency_ratio")
    # Recent Celery p95 against legacy's p95 over the whole window.
    assert latency.recent_value == pytest.approx(1.2)
    assert latency.samples["recent"] == 8
    assert "not counted as a breach" in latency.detail


@pytest.mark.parametrize(("recent_errors", "verdict"), [(8, "breach"), (0, "recovered")])
def test_an_error_rate_breach_is_confirmed_on_the_recent_runs(recent_errors, verdict):
    window = stats(path(Backend.CELERY, errors=40))
    recent = stats(path(Backend.CELERY, terminal=8, errors=recent_errors))
    confirmed = confirm_recent(evaluate(window, GUARD, shadow=False), window=window, recent=recent)
    error_rate = next(c for c in confirmed.checks if c.name == "error_rate")
    assert error_rate.verdict == verdict
    assert error_rate.recent_value == pytest.approx(recent_errors / 8)


def test_checks_that_did_not_breach_are_left_alone():
    window = stats(path(Backend.CELERY))
    verdict = evaluate(window, GUARD, shadow=False)
    assert confirm_recent(verdict, window=window, recent=window) == verdict
