"""The arithmetic of the bench: percentiles, latency summaries, throughput and the ratios it reports.

Pure functions of lists of numbers; everything the report shows is computed here, so that the
unit tests pin every figure's definition.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

PERCENTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile (the same definition storage's LatencySummary uses).

    The smallest value with at least `fraction` of the samples at or below it; None without
    samples. Nearest-rank never interpolates, so a p99 is always a latency that happened.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Summary:
    """One latency's distribution in milliseconds; the percentiles are None without samples."""

    count: int
    p50: float | None
    p95: float | None
    p99: float | None
    mean: float | None
    max: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def summarize(values: Iterable[float | None]) -> Summary:
    """Summary of the samples that exist (None entries, e.g. a part never reached, are skipped)."""
    samples = [value for value in values if value is not None]
    if not samples:
        return Summary(count=0, p50=None, p95=None, p99=None, mean=None, max=None)
    return Summary(
        count=len(samples),
        p50=percentile(samples, PERCENTILES["p50"]),
        p95=percentile(samples, PERCENTILES["p95"]),
        p99=percentile(samples, PERCENTILES["p99"]),
        mean=sum(samples) / len(samples),
        max=max(samples),
    )


def per_second(count: int, seconds: float) -> float | None:
    """`count` events over `seconds` of wall time; None for an empty or zero-length window."""
    if count <= 0 or seconds <= 0:
        return None
    return count / seconds


def ratio(value: float | None, baseline: float | None) -> float | None:
    """value / baseline, None when either is missing or the baseline is zero."""
    if value is None or not baseline:
        return None
    return value / baseline


def overhead_ms(end_to_end_p50: float | None, sandbox_p50: float | None) -> float | None:
    """The platform's median cost on top of the program: end-to-end median minus sandbox median."""
    if end_to_end_p50 is None or sandbox_p50 is None:
        return None
    return end_to_end_p50 - sandbox_p50


def cpu_share(cpu_seconds: float, wall_seconds: float) -> float | None:
    """CPU time as a share of one core over the wall time (1.0 = one core busy throughout)."""
    if wall_seconds <= 0:
        return None
    return cpu_seconds / wall_seconds
