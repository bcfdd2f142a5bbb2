"""The accept-only phase's steps: rising submission rates with the consumers paused, until one
does not hold; which rate held is decided here (pure functions of each step's figures).

A step holds when every submission was answered 202, the submit p99 stayed within the bound, and
the driver really offered the rate (its achieved rate at least ACHIEVED_SHARE of it: a driver
that fell behind its schedule did not test the rate it names).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

RATES = (100.0, 150.0, 200.0, 250.0, 300.0, 400.0)
MAX_P99_MS = 25.0
ACHIEVED_SHARE = 0.95
STEP_SECONDS = 5.0


def verdict(step: dict[str, Any], *, max_p99_ms: float = MAX_P99_MS) -> str | None:
    """Why `step` did not hold, or None when it held. `step` has `rate`, `sent`,
    `status_codes` ({"202": n, ...}), `latency_ms` (with p99) and `achieved_rate_per_s`."""
    sent = step.get("sent") or 0
    accepted = (step.get("status_codes") or {}).get("202", 0)
    if not sent:
        return "nothing sent"
    if accepted != sent:
        return f"{sent - accepted} of {sent} not accepted"
    p99 = (step.get("latency_ms") or {}).get("p99")
    if p99 is None or p99 > max_p99_ms:
        return f"p99 {p99:.1f} ms > {max_p99_ms:g} ms" if p99 is not None else "no latency"
    achieved = step.get("achieved_rate_per_s") or 0.0
    if achieved < ACHIEVED_SHARE * step["rate"]:
        return f"the driver offered only {achieved:.0f}/s"
    return None


def run_steps(
    rates: Iterable[float], measure: Callable[[float], dict[str, Any]]
) -> list[dict[str, Any]]:
    """`measure(rate)` for each rate in order, stopping after the first step that does not
    hold; each step's result gains "held" and "why_not"."""
    steps = []
    for rate in rates:
        step = dict(measure(rate))
        step.setdefault("rate", rate)
        step["why_not"] = verdict(step)
        step["held"] = step["why_not"] is None
        steps.append(step)
        if not step["held"]:
            break
    return steps


def highest_held(steps: Sequence[dict[str, Any]]) -> float | None:
    """The highest rate of the unbroken run of steps that held from the first; None if the first
    did not."""
    best = None
    for step in steps:
        if not step.get("held"):
            break
        best = step["rate"]
    return best
