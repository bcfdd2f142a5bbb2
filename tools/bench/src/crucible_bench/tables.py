"""Markdown building blocks: numbers formatted one way everywhere, and pipe tables."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

MISSING = "-"


def ms(value: float | None) -> str:
    return MISSING if value is None else f"{value:.1f}"


def share(value: float | None) -> str:
    return MISSING if value is None else f"{value:.0%}"


def times(value: float | None) -> str:
    """A ratio as a multiple: 2.95x."""
    return MISSING if value is None else f"{value:.2f}x"


def rate(value: float | None) -> str:
    return MISSING if value is None else f"{value:.1f}"


def triple(summary: dict[str, Any] | None) -> str:
    """The "p50 / p95 / p99" of a latency summary, in ms."""
    if not summary or not summary.get("count"):
        return MISSING
    return f"{ms(summary['p50'])} / {ms(summary['p95'])} / {ms(summary['p99'])}"


def counts(values: dict[str, int] | None) -> str:
    return ", ".join(f"{key} {value}" for key, value in (values or {}).items()) or MISSING


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]
