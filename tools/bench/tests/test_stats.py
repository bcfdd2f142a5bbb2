"""The arithmetic every reported figure rests on."""

from __future__ import annotations

import pytest

from crucible_bench.stats import cpu_share, overhead_ms, per_second, percentile, ratio, summarize


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [
        ([5.0], 0.5, 5.0),
        ([5.0], 0.99, 5.0),
        ([1.0, 2.0], 0.5, 1.0),
        ([1.0, 2.0], 0.51, 2.0),
        ([3.0, 1.0, 2.0, 4.0], 0.5, 2.0),
        ([3.0, 1.0, 2.0, 4.0], 0.75, 3.0),
        ([3.0, 1.0, 2.0, 4.0], 1.0, 4.0),
        (list(range(1, 101)), 0.95, 95),
        (list(range(1, 101)), 0.99, 99),
        (list(range(1, 1001)), 0.99, 990),
    ],
)
def test_percentile_is_nearest_rank(values, fraction, expected):
    assert percentile(values, fraction) == expected


def test_percentile_never_interpolates_between_samples():
    assert percentile([10.0, 20.0], 0.75) == 20.0


def test_percentile_of_nothing_is_none():
    assert percentile([], 0.5) is None


@pytest.mark.parametrize("fraction", [0, -0.1, 1.5])
def test_percentile_refuses_a_fraction_outside_the_unit_interval(fraction):
    with pytest.raises(ValueError, match="fraction"):
        percentile([1.0], fraction)


def test_summary_skips_parts_never_reached():
    summary = summarize([4.0, None, 2.0, None, 6.0])
    assert summary.count == 3
    assert (summary.p50, summary.p95, summary.p99) == (4.0, 6.0, 6.0)
    assert summary.mean == 4.0
    assert summary.max == 6.0


def test_summary_without_samples_has_no_figures():
    assert summarize([None]).as_dict() == {
        "count": 0,
        "p50": None,
        "p95": None,
        "p99": None,
        "mean": None,
        "max": None,
    }


@pytest.mark.parametrize(
    ("count", "seconds", "expected"),
    [(100, 10.0, 10.0), (0, 10.0, None), (5, 0.0, None)],
)
def test_per_second(count, seconds, expected):
    assert per_second(count, seconds) == expected


@pytest.mark.parametrize(
    ("value", "baseline", "expected"),
    [(30.0, 50.0, 0.6), (None, 50.0, None), (30.0, None, None), (30.0, 0.0, None)],
)
def test_ratio(value, baseline, expected):
    assert ratio(value, baseline) == expected


def test_overhead_is_end_to_end_median_minus_sandbox_median():
    assert overhead_ms(62.5, 50.0) == 12.5
    assert overhead_ms(None, 50.0) is None
    assert overhead_ms(62.5, None) is None


def test_cpu_share_is_of_one_core():
    assert cpu_share(1.5, 3.0) == 0.5
    assert cpu_share(1.0, 0.0) is None
