"""The ratios against the sandbox baseline and the issue's targets."""

from __future__ import annotations

import pytest

from crucible_bench.ratios import path_ratios, platform_cpu_ms, targets, warm_ratio


def latency(p50: float, p99: float | None = None) -> dict:
    return {"count": 10, "p50": p50, "p95": p99 or p50, "p99": p99 or p50}


def phases(
    *,
    sandbox_rate=50.0,
    sandbox_p50=40.0,
    celery_rate=35.0,
    celery_p50=48.0,
    submit_p99=15.0,
    warm_p50=9.0,
    platform_cpu_s=2.8,
    highest_held=300.0,
    listeners_ratio=1.05,
):
    return {
        "bare_python": {"latency_ms": latency(10.0)},
        "sandbox": {"throughput_per_s": sandbox_rate, "latency_ms": latency(sandbox_p50)},
        "warm_sandbox": {"count": 40, "latency_ms": latency(warm_p50, 20.0)},
        "legacy": {"throughput_per_s": 20.0, "split": {"end_to_end": latency(90.0)}},
        "legacy_saturated": {"throughput_per_s": 25.0, "split": {"end_to_end": latency(300.0)}},
        "celery": {"throughput_per_s": 30.0, "split": {"end_to_end": latency(celery_p50)}},
        "celery_saturated": {
            "throughput_per_s": celery_rate,
            "count": 200,
            "split": {"end_to_end": latency(200.0)},
            # 200 evaluations: the platform (all but the executors) used `platform_cpu_s`
            "cpu": {
                "processes_cpu_s": {
                    "executor-2": 2.0,
                    "executor-3": 2.0,
                    "storage": platform_cpu_s - 1.0,
                    "gateway": 1.0,
                }
            },
        },
        "submit_legacy": {"rate": 100.0, "latency_ms": latency(5.0, submit_p99)},
        "submit_celery": {"rate": 100.0, "latency_ms": latency(5.0, submit_p99)},
        "submit_shadow": {"rate": 100.0, "latency_ms": latency(5.0, 60.0)},
        "accept_only": {"max_p99_ms": 25.0, "highest_held_per_s": highest_held},
        "listeners": {"listeners": 100, "p99_ratio": listeners_ratio},
    }


def test_throughput_ratio_uses_the_saturated_run_and_overhead_the_unsaturated_one():
    ratios = path_ratios(phases())
    assert ratios["celery"] == pytest.approx(
        {
            "throughput_ratio": 35.0 / 50.0,
            "throughput_ratio_at_concurrency": 30.0 / 50.0,
            "median_overhead_ms": 48.0 - 40.0,
        }
    )
    assert ratios["legacy"]["throughput_ratio"] == pytest.approx(0.5)
    assert ratios["legacy"]["median_overhead_ms"] == pytest.approx(50.0)


def test_ratios_without_a_baseline_are_none():
    data = phases()
    del data["sandbox"]
    assert path_ratios(data)["celery"] == {
        "throughput_ratio": None,
        "throughput_ratio_at_concurrency": None,
        "median_overhead_ms": None,
    }


def test_a_path_not_measured_has_no_ratios():
    data = phases()
    del data["legacy"]
    assert set(path_ratios(data)) == {"celery"}


def met(rows: list[dict]) -> dict[str, bool | None]:
    return {row["name"]: row["met"] for row in rows}


def test_targets_met_and_missed():
    data = phases()
    rows = met(targets(data, path_ratios(data)))
    assert rows == {
        "Warm sandbox `print(1)` median / bare spawn": True,
        "Warm sandbox, stretch": False,
        "Platform CPU per Celery evaluation outside the executors (celery_saturated)": True,
        "Celery throughput / sandbox baseline (saturated)": False,
        "Legacy throughput / sandbox baseline (saturated)": None,
        "Celery median overhead, 2 in flight": True,
        "Gateway submit p99, legacy at 100/s": True,
        "Gateway submit p99, celery at 100/s": True,
        "Gateway submit p99, shadow at 100/s": False,
        "Accept-only: submissions/s sustained with p99 <= 25 ms": True,
        "Submit p99 with 100 event listeners / without": True,
    }


@pytest.mark.parametrize(("ratio", "expected"), [(1.2, True), (1.21, False)])
def test_the_listeners_target_at_its_bound(ratio, expected):
    data = phases(listeners_ratio=ratio)
    rows = met(targets(data, path_ratios(data)))
    assert rows["Submit p99 with 100 event listeners / without"] is expected


def test_the_legacy_throughput_is_reported_with_a_value_but_no_verdict():
    data = phases()
    (row,) = [row for row in targets(data, path_ratios(data)) if row["name"].startswith("Legacy")]
    assert row["value"] == pytest.approx(0.5)
    assert (row["met"], row["unit"]) == (None, "share")


@pytest.mark.parametrize(
    ("celery_rate", "celery_p50", "expected"),
    [
        (40.0, 55.0, (True, True)),  # exactly 80 % and exactly 15 ms meet the targets
        (39.9, 55.1, (False, False)),
    ],
)
def test_celery_targets_at_their_bounds(celery_rate, celery_p50, expected):
    data = phases(celery_rate=celery_rate, celery_p50=celery_p50)
    rows = met(targets(data, path_ratios(data)))
    assert (
        rows["Celery throughput / sandbox baseline (saturated)"],
        rows["Celery median overhead, 2 in flight"],
    ) == expected


@pytest.mark.parametrize(
    ("warm_p50", "expected"),
    [(10.0, (True, False)), (5.0, (True, True)), (10.1, (False, False))],
)
def test_warm_sandbox_against_the_bare_spawn_and_the_stretch(warm_p50, expected):
    data = phases(warm_p50=warm_p50)
    assert warm_ratio(data) == pytest.approx(warm_p50 / 10.0)
    rows = met(targets(data, path_ratios(data)))
    assert (
        rows["Warm sandbox `print(1)` median / bare spawn"],
        rows["Warm sandbox, stretch"],
    ) == expected


@pytest.mark.parametrize(("platform_cpu_s", "expected"), [(3.0, True), (3.02, False)])
def test_platform_cpu_leaves_the_executors_out(platform_cpu_s, expected):
    data = phases(platform_cpu_s=platform_cpu_s)
    # 3 s over 200 evaluations is exactly 15 ms; the executors' 4 s do not count
    assert platform_cpu_ms(data["celery_saturated"]) == pytest.approx(platform_cpu_s * 1000 / 200)
    name = "Platform CPU per Celery evaluation outside the executors (celery_saturated)"
    assert met(targets(data, path_ratios(data)))[name] is expected


@pytest.mark.parametrize(("highest", "expected"), [(250.0, True), (200.0, False), (None, False)])
def test_accept_only_target(highest, expected):
    data = phases(highest_held=highest)
    (row,) = [row for row in targets(data, {}) if row["name"].startswith("Accept-only")]
    # A phase whose first step failed sustained nothing: 0/s, a miss, not missing data.
    assert (row["value"], row["met"]) == (highest or 0.0, expected)


def test_a_target_without_data_is_neither_met_nor_missed():
    rows = targets({}, {})
    assert all(row["met"] is None and row["value"] is None for row in rows)
