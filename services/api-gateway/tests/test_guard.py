"""Unit tests of the rollback guard and the ramp: every check's branches, the decision, the share."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from crucible_contracts.models import (
    ComparisonOutcome,
    ComparisonStats,
    LatencySummary,
    MigrationStats,
    PathStats,
)
from crucible_contracts.names import Backend
from crucible_gateway.migration.guard import (
    Check,
    GuardSettings,
    RampSettings,
    Verdict,
    evaluate,
    ramp_due,
    ramp_next,
    rollback_target,
)

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
GUARD = GuardSettings()  # min_samples 20, +5 % errors, 5 % mismatches, p95 ratio 3
RAMP = RampSettings(active=True)  # 10 % → 50 % → 90 % → 100 %, 300 s each


def path(
    backend: Backend, *, terminal: int = 100, errors: int = 0, p95: float = 100, timed: int = 100
) -> PathStats:
    """A path's window: `terminal` ended runs of which `errors` ended `error`."""
    return PathStats(
        backend=backend,
        total=terminal,
        terminal=terminal,
        by_status={"completed": terminal - errors, "error": errors},
        success_rate=(terminal - errors) / terminal if terminal else None,
        error_rate=errors / terminal if terminal else None,
        end_to_end=LatencySummary(count=timed, p50_ms=p95 / 2, p95_ms=p95, p99_ms=p95),
    )


def comparisons(**by_outcome: int) -> ComparisonStats:
    total = sum(by_outcome.values())
    return ComparisonStats(
        total=total,
        by_outcome=by_outcome,
        rates={outcome: count / total for outcome, count in by_outcome.items()},
    )


def stats(
    *, celery: PathStats | None = None, legacy: PathStats | None = None, compared=None
) -> MigrationStats:
    """A healthy window unless told otherwise: both paths busy, alike, and all comparisons match."""
    return MigrationStats(
        since=T0,
        until=T0 + timedelta(minutes=5),
        paths={
            Backend.CELERY: celery or path(Backend.CELERY),
            Backend.LEGACY: legacy or path(Backend.LEGACY),
        },
        comparisons=compared if compared is not None else comparisons(match=100),
    )


def check(verdict: Verdict, name: str) -> Check:
    return next(c for c in verdict.checks if c.name == name)


# --- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("window_seconds", 0),
        ("min_samples", 0),
        ("max_error_rate_increase", -0.1),
        ("max_error_rate_increase", 1.5),
        ("max_mismatch_rate", 1.01),
        ("max_p95_latency_ratio", 1.0),
        ("max_p95_latency_ratio", float("inf")),
        ("rollback_to", "half"),
        ("breach_after", 0),
        ("recent_seconds", 0),
        ("cooldown", 5),
    ],
)
def test_guard_settings_out_of_range_are_refused_naming_the_field(field, value):
    with pytest.raises(ValidationError, match=field):
        GuardSettings.model_validate({field: value})


@pytest.mark.parametrize(
    ("steps", "words"),
    [
        ([], "steps"),
        ([0.0, 0.5], r"\(0, 1\]"),
        ([0.5, 1.2], r"\(0, 1\]"),
        ([0.5, 0.1], "strictly increase"),
        ([0.5, 0.5, 1.0], "strictly increase"),
    ],
    ids=["empty", "zero", "above-one", "decreasing", "repeated"],
)
def test_ramp_steps_must_be_increasing_shares(steps, words):
    with pytest.raises(ValidationError, match=words):
        RampSettings(steps=steps)


def test_ramp_hold_must_be_positive():
    with pytest.raises(ValidationError, match="hold_seconds"):
        RampSettings(hold_seconds=0)


@pytest.mark.parametrize(
    "settings",
    [
        GuardSettings(),
        GuardSettings(enabled=False, min_samples=5, rollback_to="previous_step"),
        RampSettings(),
        RampSettings(active=True, steps=[0.25, 1.0], hold_seconds=60),
    ],
)
def test_settings_round_trip_through_the_json_settings_document(settings):
    stored = json.loads(json.dumps(settings.model_dump(mode="json")))
    assert type(settings).model_validate(stored) == settings


# --- error_rate --------------------------------------------------------------------------------


def test_error_rate_is_inconclusive_while_celery_has_too_few_ended_runs():
    window = stats(celery=path(Backend.CELERY, terminal=19, errors=19))
    found = check(evaluate(window, GUARD, shadow=False), "error_rate")
    assert found.verdict == "inconclusive"
    assert found.value is None
    assert found.samples == {"celery_terminal": 19, "legacy_terminal": 100}
    assert "19" in found.detail and "20" in found.detail


@pytest.mark.parametrize(
    ("celery_errors", "legacy_errors", "verdict", "threshold"),
    [
        (7, 2, "pass", 0.07),
        (8, 2, "breach", 0.07),
        (5, 0, "pass", 0.05),
        (6, 0, "breach", 0.05),
        (30, 30, "pass", 0.35),
    ],
    ids=["at-baseline-plus-margin", "above-it", "zero-baseline", "above-zero-baseline", "both-bad"],
)
def test_error_rate_against_legacys(celery_errors, legacy_errors, verdict, threshold):
    window = stats(
        celery=path(Backend.CELERY, errors=celery_errors),
        legacy=path(Backend.LEGACY, errors=legacy_errors),
    )
    found = check(evaluate(window, GUARD, shadow=False), "error_rate")
    assert found.verdict == verdict
    assert found.value == pytest.approx(celery_errors / 100)
    assert found.threshold == pytest.approx(threshold)
    assert f"({celery_errors}/100)" in found.detail
    assert f"legacy's {legacy_errors / 100:.1%} ({legacy_errors}/100)" in found.detail


def test_error_rate_baseline_is_zero_when_legacy_has_too_few_runs_and_says_so():
    window = stats(
        celery=path(Backend.CELERY, terminal=40, errors=3),
        legacy=path(Backend.LEGACY, terminal=5, errors=5),
    )
    found = check(evaluate(window, GUARD, shadow=False), "error_rate")
    assert found.verdict == "breach"
    assert found.value == pytest.approx(0.075)
    assert found.threshold == pytest.approx(0.05)
    assert "baseline of 0 (legacy has only 5 ended runs, needs 20)" in found.detail
    assert "7.5% (3/40)" in found.detail


# --- mismatch_rate -----------------------------------------------------------------------------


def test_mismatch_rate_is_skipped_outside_shadow_mode():
    window = stats(compared=comparisons(mismatch=100))
    found = check(evaluate(window, GUARD, shadow=False), "mismatch_rate")
    assert found.verdict == "skip"


def test_mismatch_rate_is_inconclusive_with_too_few_comparisons():
    window = stats(compared=comparisons(mismatch=19))
    found = check(evaluate(window, GUARD, shadow=True), "mismatch_rate")
    assert found.verdict == "inconclusive"
    assert found.samples == {"comparisons": 19, "disagreements": 19}
    assert "19 comparisons" in found.detail and "20" in found.detail


@pytest.mark.parametrize(
    ("outcome", "disagrees"),
    [
        (ComparisonOutcome.MATCH, False),
        (ComparisonOutcome.MATCH_AFTER_NORMALISATION, False),
        (ComparisonOutcome.BOTH_FAILED, False),
        (ComparisonOutcome.MISMATCH, True),
        (ComparisonOutcome.PRIMARY_FAILED_ONLY, True),
        (ComparisonOutcome.SHADOW_FAILED_ONLY, True),
        (ComparisonOutcome.SHADOW_MISSING, True),
    ],
)
def test_which_outcomes_count_as_disagreements(outcome, disagrees):
    by_outcome = {"match": 90}
    by_outcome[outcome.value] = by_outcome.get(outcome.value, 0) + 10
    found = check(
        evaluate(stats(compared=comparisons(**by_outcome)), GUARD, shadow=True), "mismatch_rate"
    )
    assert found.value == pytest.approx(0.1 if disagrees else 0.0)
    assert found.verdict == ("breach" if disagrees else "pass")


@pytest.mark.parametrize(("disagreements", "verdict"), [(5, "pass"), (6, "breach")])
def test_mismatch_rate_breaches_above_the_threshold(disagreements, verdict):
    window = stats(
        compared=comparisons(match=95 - disagreements, mismatch=disagreements, both_failed=5)
    )
    found = check(evaluate(window, GUARD, shadow=True), "mismatch_rate")
    assert found.verdict == verdict
    assert found.threshold == 0.05
    assert f"({disagreements}/100 comparisons disagreed)" in found.detail


# --- p95_latency_ratio -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("celery_timed", "legacy_timed", "words"),
    [(19, 100, "celery has 19"), (100, 3, "legacy has 3"), (0, 0, "celery has 0")],
)
def test_latency_ratio_is_inconclusive_without_enough_timed_runs_on_both_paths(
    celery_timed, legacy_timed, words
):
    window = stats(
        celery=path(Backend.CELERY, timed=celery_timed),
        legacy=path(Backend.LEGACY, timed=legacy_timed),
    )
    found = check(evaluate(window, GUARD, shadow=False), "p95_latency_ratio")
    assert found.verdict == "inconclusive"
    assert words in found.detail
    assert found.samples == {"celery_end_to_end": celery_timed, "legacy_end_to_end": legacy_timed}


@pytest.mark.parametrize(
    ("celery_p95", "legacy_p95", "verdict", "ratio"),
    [(300, 100, "pass", 3.0), (301, 100, "breach", 3.01), (50, 100, "pass", 0.5)],
)
def test_latency_ratio_breaches_above_the_threshold(celery_p95, legacy_p95, verdict, ratio):
    window = stats(
        celery=path(Backend.CELERY, p95=celery_p95), legacy=path(Backend.LEGACY, p95=legacy_p95)
    )
    found = check(evaluate(window, GUARD, shadow=False), "p95_latency_ratio")
    assert found.verdict == verdict
    assert found.value == pytest.approx(ratio)
    assert f"celery {celery_p95} ms / legacy {legacy_p95} ms" in found.detail


def test_a_zero_legacy_p95_does_not_divide_by_zero():
    window = stats(celery=path(Backend.CELERY, p95=5), legacy=path(Backend.LEGACY, p95=0))
    found = check(evaluate(window, GUARD, shadow=False), "p95_latency_ratio")
    assert found.verdict == "breach"
    assert found.value == 5.0


# --- the decision ------------------------------------------------------------------------------


def test_a_healthy_window_passes_every_check():
    verdict = evaluate(stats(), GUARD, shadow=True)
    assert verdict.decision == "pass"
    assert [(c.name, c.verdict) for c in verdict.checks] == [
        ("error_rate", "pass"),
        ("mismatch_rate", "pass"),
        ("p95_latency_ratio", "pass"),
    ]


def test_a_skipped_check_does_not_stop_a_pass():
    verdict = evaluate(stats(compared=comparisons()), GUARD, shadow=False)
    assert verdict.decision == "pass"


def test_an_inconclusive_check_stops_a_pass():
    verdict = evaluate(stats(compared=comparisons(match=3)), GUARD, shadow=True)
    assert verdict.decision == "inconclusive"


def test_a_breach_wins_over_an_inconclusive_check():
    window = stats(celery=path(Backend.CELERY, errors=50), compared=comparisons(match=3))
    assert evaluate(window, GUARD, shadow=True).decision == "breach"


def test_an_empty_window_is_inconclusive_and_never_passes():
    empty = MigrationStats(since=T0, until=T0, paths={}, comparisons=ComparisonStats())
    verdict = evaluate(empty, GUARD, shadow=True)
    assert verdict.decision == "inconclusive"
    assert {c.verdict for c in verdict.checks} == {"inconclusive"}


def test_min_samples_is_a_setting():
    window = stats(
        celery=path(Backend.CELERY, terminal=5, timed=5),
        legacy=path(Backend.LEGACY, terminal=5, timed=5),
        compared=comparisons(match=5),
    )
    assert evaluate(window, GUARD, shadow=True).decision == "inconclusive"
    assert evaluate(window, GuardSettings(min_samples=5), shadow=True).decision == "pass"


def test_the_summary_names_every_breached_and_inconclusive_check_with_its_numbers_on_one_line():
    window = stats(
        celery=path(Backend.CELERY, errors=12, p95=900), compared=comparisons(match=4, mismatch=1)
    )
    verdict = evaluate(window, GUARD, shadow=True)
    summary = verdict.summary()
    assert verdict.decision == "breach"
    assert "\n" not in summary
    assert summary.startswith("breach: ")
    assert "error_rate breach: celery error rate 12.0% (12/100)" in summary
    assert "mismatch_rate inconclusive: 5 comparisons in the window, needs 20" in summary
    assert "p95_latency_ratio breach:" in summary and "9.00x" in summary


def test_the_summary_of_a_pass_names_the_passing_numbers():
    summary = evaluate(stats(), GUARD, shadow=False).summary()
    assert summary.startswith("pass: error_rate pass: celery error rate 0.0% (0/100)")
    assert "mismatch_rate" not in summary
    assert "p95_latency_ratio pass" in summary


def test_a_verdict_round_trips_through_json():
    verdict = evaluate(stats(legacy=path(Backend.LEGACY, p95=0)), GUARD, shadow=True)
    assert Verdict.model_validate_json(verdict.model_dump_json()) == verdict


# --- rollback target, ramp ---------------------------------------------------------------------

STEPS = RampSettings(steps=[0.1, 0.5, 0.9, 1.0])
PREVIOUS = GuardSettings(rollback_to="previous_step")


@pytest.mark.parametrize(
    ("current", "guard", "target"),
    [
        (0.9, GUARD, 0.0),
        (1.0, PREVIOUS, 0.9),
        (0.9, PREVIOUS, 0.5),
        (0.7, PREVIOUS, 0.5),
        (0.1, PREVIOUS, 0.0),
        (0.05, PREVIOUS, 0.0),
        (0.0, PREVIOUS, 0.0),
    ],
    ids=["zero", "from-last", "from-step", "between-steps", "first-step", "below-first", "at-zero"],
)
def test_rollback_target(current, guard, target):
    assert rollback_target(current, guard, STEPS) == target


@pytest.mark.parametrize(
    ("current", "expected"),
    [(0.0, 0.1), (0.1, 0.5), (0.3, 0.5), (0.9, 1.0), (1.0, None)],
)
def test_ramp_next_is_the_smallest_step_above_the_current_share(current, expected):
    assert ramp_next(current, STEPS) == expected


def test_ramp_next_is_none_beyond_the_last_step():
    assert ramp_next(0.8, RampSettings(steps=[0.25, 0.5])) is None


shares = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
ramps = st.lists(
    st.floats(min_value=0.0, max_value=1.0, exclude_min=True, allow_nan=False),
    min_size=1,
    max_size=8,
    unique=True,
).map(lambda steps: RampSettings(steps=sorted(steps)))
guards = st.sampled_from([GUARD, PREVIOUS])


@given(current=shares.filter(lambda share: share > 0), guard=guards, ramp=ramps)
def test_rollback_always_lowers_a_positive_share(current, guard, ramp):
    target = rollback_target(current, guard, ramp)
    assert 0.0 <= target < current


@given(low=shares, high=shares, ramp=ramps)
def test_ramp_next_is_monotonic_and_always_moves_up(low, high, ramp):
    low, high = min(low, high), max(low, high)
    after_low, after_high = ramp_next(low, ramp), ramp_next(high, ramp)
    if after_high is not None:
        assert after_low is not None and after_low <= after_high
    if after_low is not None:
        assert after_low > low and after_low in ramp.steps


PASS = Verdict(decision="pass", checks=[])
INCONCLUSIVE = Verdict(decision="inconclusive", checks=[])
BREACH = Verdict(decision="breach", checks=[])


@pytest.mark.parametrize(
    ("ramp", "current", "verdict", "held", "expected"),
    [
        (RAMP, 0.1, PASS, 300, 0.5),
        (RAMP, 0.1, PASS, 3600, 0.5),
        (RAMP, 0.0, PASS, 300, 0.1),
        (RAMP, 0.9, PASS, 300, 1.0),
        (RAMP, 1.0, PASS, 300, None),
        (RAMP, 0.1, PASS, 299.9, None),
        (RAMP, 0.1, INCONCLUSIVE, 3600, None),
        (RAMP, 0.1, BREACH, 3600, None),
        (RampSettings(active=False), 0.1, PASS, 3600, None),
    ],
    ids=[
        "held-long-enough",
        "held-longer",
        "from-zero",
        "to-the-last-step",
        "at-the-last-step",
        "not-held-long-enough",
        "never-when-inconclusive",
        "never-on-breach",
        "inactive",
    ],
)
def test_ramp_due(ramp, current, verdict, held, expected):
    now = T0 + timedelta(seconds=held)
    assert (
        ramp_due(current=current, ramp=ramp, verdict=verdict, step_started_at=T0, now=now)
        == expected
    )
