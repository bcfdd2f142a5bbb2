"""The ratios against the sandbox baseline and the issue's targets."""

from __future__ import annotations

import pytest

from crucible_bench.ratios import path_ratios, targets


def latency(p50: float, p99: float | None = None) -> dict:
    return {"count": 10, "p50": p50, "p95": p99 or p50, "p99": p99 or p50}


def phases(
    *, sandbox_rate=50.0, sandbox_p50=40.0, celery_rate=35.0, celery_p50=48.0, submit_p99=15.0
):
    return {
        "sandbox": {"throughput_per_s": sandbox_rate, "latency_ms": latency(sandbox_p50)},
        "legacy": {"throughput_per_s": 20.0, "split": {"end_to_end": latency(90.0)}},
        "legacy_saturated": {"throughput_per_s": 25.0, "split": {"end_to_end": latency(300.0)}},
        "celery": {"throughput_per_s": 30.0, "split": {"end_to_end": latency(celery_p50)}},
        "celery_saturated": {
            "throughput_per_s": celery_rate,
            "split": {"end_to_end": latency(200.0)},
        },
        "submit_legacy": {"rate": 100.0, "latency_ms": latency(5.0, submit_p99)},
        "submit_celery": {"rate": 100.0, "latency_ms": latency(5.0, submit_p99)},
        "submit_shadow": {"rate": 100.0, "latency_ms": latency(5.0, 30.0)},
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
        "Celery throughput / sandbox baseline": True,
        "Celery median overhead (ms)": True,
        "Gateway submit p99 (ms), legacy at 100 req/s": True,
        "Gateway submit p99 (ms), celery at 100 req/s": True,
        "Gateway submit p99 (ms), shadow at 100 req/s": False,
    }


@pytest.mark.parametrize(
    ("celery_rate", "celery_p50", "expected"),
    [
        (30.0, 50.0, (True, True)),  # exactly 60 % and exactly 10 ms meet the targets
        (29.9, 50.1, (False, False)),
    ],
)
def test_celery_targets_at_their_bounds(celery_rate, celery_p50, expected):
    data = phases(celery_rate=celery_rate, celery_p50=celery_p50)
    rows = met(targets(data, path_ratios(data)))
    assert (
        rows["Celery throughput / sandbox baseline"],
        rows["Celery median overhead (ms)"],
    ) == expected


def test_a_target_without_data_is_neither_met_nor_missed():
    rows = targets({}, {})
    assert all(row["met"] is None and row["value"] is None for row in rows)
