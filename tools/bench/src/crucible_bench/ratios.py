"""The ratios that matter and the issue's targets, computed from the phases' results.

- throughput ratio: a path's sustained throughput (saturated closed loop, every evaluation
  completed) over the sandbox's capacity (its executors with every slot taken), both at the same
  machine and moment;
- median overhead: a path's end-to-end median at the light load (2 in flight: nothing waits
  behind anything else) minus the sandbox baseline's median POST /execute at the same load;
- warm ratio: the warm sandbox's median print(1) over the bare interpreter's spawn median;
- platform CPU: the suite's CPU per evaluation outside the executors (saturated Celery phase).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crucible_bench.stats import overhead_ms, ratio

PATHS = ("legacy", "celery")
SUBMIT_MODES = ("legacy", "celery", "shadow")

# Issue 14's targets.
WARM_MAX_RATIO = 1.0  # warm sandbox print(1) median / the bare interpreter's spawn median
WARM_STRETCH_RATIO = 0.5
PLATFORM_MAX_CPU_MS = 15.0  # suite CPU per Celery evaluation outside the executors
PLATFORM_CPU_PHASE = "celery_saturated"
CELERY_MIN_THROUGHPUT_RATIO = 0.80
CELERY_MAX_OVERHEAD_MS = 15.0
SUBMIT_MAX_P99_MS = 50.0
ACCEPT_MIN_RATE = 250.0
# Submit p99 with 100 live event listeners over the p99 without them (phase 6).
LISTENERS_MAX_P99_RATIO = 1.2


def _get(data: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def evaluations_of(phase: dict[str, Any]) -> int:
    """What a phase's CPU is divided by: its evaluations (or executions, or submissions)."""
    return int(phase.get("count") or phase.get("sent") or 0)


def is_executor(process: str) -> bool:
    return process.startswith("executor-")


def cpu_per_evaluation_ms(
    phase: dict[str, Any], *, include: Callable[[str], bool] = lambda _: True
) -> float | None:
    """CPU ms per evaluation of the suite processes `include` accepts (all by default) in a
    phase; None without CPU figures or evaluations."""
    used = _get(phase, "cpu", "processes_cpu_s")
    count = evaluations_of(phase)
    if used is None or not count:
        return None
    return sum(seconds for name, seconds in used.items() if include(name)) * 1000 / count


def platform_cpu_ms(phase: dict[str, Any]) -> float | None:
    """CPU ms per evaluation of every suite process except the executors (which hold the
    sandboxed programs): what the platform itself costs around a program."""
    return cpu_per_evaluation_ms(phase, include=lambda name: not is_executor(name))


def warm_ratio(phases: dict[str, Any]) -> float | None:
    """The warm sandbox's median print(1) through POST /execute over the bare spawn's median."""
    return ratio(
        _get(phases, "warm_sandbox", "latency_ms", "p50"),
        _get(phases, "bare_python", "latency_ms", "p50"),
    )


def path_ratios(phases: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Per path: throughput ratios (sustained and at concurrency) and median overhead in ms."""
    # Throughput against the executors' capacity (every slot taken) where it was measured;
    # latency against the same light load as the path's.
    baseline = _get(phases, "sandbox_saturated", "throughput_per_s") or _get(
        phases, "sandbox", "throughput_per_s"
    )
    light_baseline = _get(phases, "sandbox", "throughput_per_s")
    sandbox_p50 = _get(phases, "sandbox", "latency_ms", "p50")
    return {
        path: {
            "throughput_ratio": ratio(
                _get(phases, f"{path}_saturated", "throughput_per_s"), baseline
            ),
            "throughput_ratio_at_concurrency": ratio(
                _get(phases, path, "throughput_per_s"), light_baseline
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
    """Each target of issue 14 with the measured value, its unit ("x", "share", "ms", "per_s")
    and whether it was met (None: no data, or a figure only reported)."""
    warm = warm_ratio(phases)
    rows = [
        _target(
            "Warm sandbox `print(1)` median / bare spawn",
            f"<= {WARM_MAX_RATIO:g}x",
            warm,
            "x",
            lambda value: value <= WARM_MAX_RATIO,
        ),
        _target(
            "Warm sandbox, stretch",
            f"<= {WARM_STRETCH_RATIO:g}x",
            warm,
            "x",
            lambda value: value <= WARM_STRETCH_RATIO,
        ),
        _target(
            f"Platform CPU per Celery evaluation outside the executors ({PLATFORM_CPU_PHASE})",
            f"<= {PLATFORM_MAX_CPU_MS:g} ms",
            platform_cpu_ms(phases[PLATFORM_CPU_PHASE]) if PLATFORM_CPU_PHASE in phases else None,
            "ms",
            lambda value: value <= PLATFORM_MAX_CPU_MS,
        ),
        _target(
            "Celery throughput / sandbox baseline (saturated)",
            f">= {CELERY_MIN_THROUGHPUT_RATIO:.0%}",
            _get(ratios, "celery", "throughput_ratio"),
            "share",
            lambda value: value >= CELERY_MIN_THROUGHPUT_RATIO,
        ),
        _target(
            "Legacy throughput / sandbox baseline (saturated)",
            "reported",
            _get(ratios, "legacy", "throughput_ratio"),
            "share",
            None,
        ),
        _target(
            "Celery median overhead, 2 in flight",
            f"<= {CELERY_MAX_OVERHEAD_MS:g} ms",
            _get(ratios, "celery", "median_overhead_ms"),
            "ms",
            lambda value: value <= CELERY_MAX_OVERHEAD_MS,
        ),
    ]
    for mode in SUBMIT_MODES:
        rate = _get(phases, f"submit_{mode}", "rate")
        rows.append(
            _target(
                f"Gateway submit p99, {mode}" + (f" at {rate:g}/s" if rate else ""),
                f"<= {SUBMIT_MAX_P99_MS:g} ms",
                _get(phases, f"submit_{mode}", "latency_ms", "p99"),
                "ms",
                lambda value: value <= SUBMIT_MAX_P99_MS,
            )
        )
    accept_p99 = _get(phases, "accept_only", "max_p99_ms")
    rows.append(
        _target(
            "Accept-only: submissions/s sustained with p99"
            + (f" <= {accept_p99:g} ms" if accept_p99 else ""),
            f">= {ACCEPT_MIN_RATE:g}/s",
            _accept_value(phases),
            "per_s",
            lambda value: value >= ACCEPT_MIN_RATE,
        )
    )
    listeners = _get(phases, "listeners", "listeners")
    rows.append(
        _target(
            f"Submit p99 with {listeners or 'the'} event listeners / without",
            f"<= {LISTENERS_MAX_P99_RATIO:g}x",
            _get(phases, "listeners", "p99_ratio"),
            "x",
            lambda value: value <= LISTENERS_MAX_P99_RATIO,
        )
    )
    return rows


def _accept_value(phases: dict[str, Any]) -> float | None:
    """The highest rate that held; 0 when the phase ran and not even its first step held."""
    accept = phases.get("accept_only")
    if not accept:
        return None
    return accept.get("highest_held_per_s") or 0.0


def _target(
    name: str,
    target: str,
    value: float | None,
    unit: str,
    met: Callable[[float], bool] | None,
) -> dict[str, Any]:
    return {
        "name": name,
        "target": target,
        "value": value,
        "unit": unit,
        "met": None if value is None or met is None else met(value),
    }
