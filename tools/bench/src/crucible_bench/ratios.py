"""The ratios that matter and the issue's targets, computed from the phases' results.

- throughput ratio: a path's sustained throughput (saturated closed loop, every evaluation
  completed) over the sandbox baseline's, both at the same machine and moment;
- median overhead: a path's end-to-end median at the consumers' own concurrency (nothing waits
  behind anything else) minus the sandbox baseline's median POST /execute.
"""

from __future__ import annotations

from typing import Any

from crucible_bench.stats import overhead_ms, ratio

PATHS = ("legacy", "celery")
SUBMIT_MODES = ("legacy", "celery", "shadow")

CELERY_MIN_THROUGHPUT_RATIO = 0.60
CELERY_MAX_OVERHEAD_MS = 10.0
SUBMIT_MAX_P99_MS = 20.0


def _get(data: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def path_ratios(phases: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Per path: throughput ratios (sustained and at concurrency) and median overhead in ms."""
    baseline = _get(phases, "sandbox", "throughput_per_s")
    sandbox_p50 = _get(phases, "sandbox", "latency_ms", "p50")
    return {
        path: {
            "throughput_ratio": ratio(
                _get(phases, f"{path}_saturated", "throughput_per_s"), baseline
            ),
            "throughput_ratio_at_concurrency": ratio(
                _get(phases, path, "throughput_per_s"), baseline
            ),
            "median_overhead_ms": overhead_ms(
                _get(phases, path, "split", "end_to_end", "p50"), sandbox_p50
            ),
        }
        for path in PATHS
        if path in phases
    }


def targets(
    phases: dict[str, Any], ratios: dict[str, dict[str, float | None]]
) -> list[dict[str, Any]]:
    """Each target of the issue with the measured value and whether it was met (None: no data)."""
    rows = [
        _target(
            "Celery throughput / sandbox baseline",
            f">= {CELERY_MIN_THROUGHPUT_RATIO:.0%}",
            _get(ratios, "celery", "throughput_ratio"),
            lambda value: value >= CELERY_MIN_THROUGHPUT_RATIO,
        ),
        _target(
            "Celery median overhead (ms)",
            f"<= {CELERY_MAX_OVERHEAD_MS:g} ms",
            _get(ratios, "celery", "median_overhead_ms"),
            lambda value: value <= CELERY_MAX_OVERHEAD_MS,
        ),
    ]
    for mode in SUBMIT_MODES:
        rate = _get(phases, f"submit_{mode}", "rate")
        rows.append(
            _target(
                f"Gateway submit p99 (ms), {mode}" + (f" at {rate:g} req/s" if rate else ""),
                f"<= {SUBMIT_MAX_P99_MS:g} ms",
                _get(phases, f"submit_{mode}", "latency_ms", "p99"),
                lambda value: value <= SUBMIT_MAX_P99_MS,
            )
        )
    return rows


def _target(name: str, target: str, value: float | None, met: Any) -> dict[str, Any]:
    return {
        "name": name,
        "target": target,
        "value": value,
        "met": None if value is None else met(value),
    }
