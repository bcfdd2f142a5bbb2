"""The accept-only phase's steps: when a rate holds, where the climb stops, what held."""

from __future__ import annotations

import pytest

from crucible_bench.accept import highest_held, run_steps, verdict


def step(rate: float, *, p99: float = 10.0, refused: int = 0, achieved: float | None = None):
    sent = int(rate * 5)
    codes = {"202": sent - refused, **({"503": refused} if refused else {})}
    return {
        "rate": rate,
        "sent": sent,
        "status_codes": codes,
        "latency_ms": {"count": sent - refused, "p50": 5.0, "p95": 8.0, "p99": p99},
        "achieved_rate_per_s": rate if achieved is None else achieved,
    }


@pytest.mark.parametrize(
    ("measured", "why_not"),
    [
        (step(100.0), None),
        (step(100.0, p99=25.0), None),  # the bound itself holds
        (step(100.0, p99=25.1), "p99 25.1 ms > 25 ms"),
        (step(100.0, refused=1), "1 of 500 not accepted"),
        (step(100.0, achieved=94.0), "the driver offered only 94/s"),
        (step(100.0, achieved=95.0), None),
        ({"rate": 100.0, "sent": 0, "status_codes": {}}, "nothing sent"),
    ],
)
def test_verdict_of_one_step(measured, why_not):
    assert verdict(measured) == why_not


def test_the_climb_stops_after_the_first_step_that_does_not_hold():
    p99s = {100.0: 8.0, 150.0: 12.0, 200.0: 30.0, 250.0: 9.0}
    offered = []

    def measure(rate: float) -> dict:
        offered.append(rate)
        return step(rate, p99=p99s[rate])

    steps = run_steps([100.0, 150.0, 200.0, 250.0], measure)
    assert offered == [100.0, 150.0, 200.0]  # 250/s is never offered
    assert [one["held"] for one in steps] == [True, True, False]
    assert steps[-1]["why_not"] == "p99 30.0 ms > 25 ms"
    assert highest_held(steps) == 150.0


def test_every_step_holding_gives_the_highest_rate():
    steps = run_steps([100.0, 400.0], step)
    assert highest_held(steps) == 400.0


def test_nothing_held_when_the_first_step_fails():
    steps = run_steps([100.0, 150.0], lambda rate: step(rate, refused=3))
    assert len(steps) == 1
    assert highest_held(steps) is None


def test_a_held_step_after_a_failed_one_does_not_count():
    steps = [{"rate": 100.0, "held": False}, {"rate": 150.0, "held": True}]
    assert highest_held(steps) is None
