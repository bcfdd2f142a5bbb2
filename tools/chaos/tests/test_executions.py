"""Counting program starts per run from executor logs, restarts included."""

from __future__ import annotations

import json

from crucible_chaos.executions import Starts, executed_twice, merge, starts_in_log

A, B = "a" * 32, "b" * 32


def log(*messages: str) -> str:
    lines = [json.dumps({"level": "INFO", "message": message}) for message in messages]
    return "\n".join([*lines, "Traceback (most recent call last): not JSON"])


BOOT = "sandbox mode bwrap (probe passed); cgroups v2; scratch on; uids 61000"


def test_a_started_and_ended_run_counts_once_and_joins_or_collects_add_nothing():
    text = log(
        BOOT, f"eval {A} primary started in slot 0", f"eval {A} primary ended completed (0) in 5 ms"
    )
    assert starts_in_log(text) == {(A, "primary"): Starts(started=1, lost=0)}


def test_a_start_without_an_end_before_the_executor_started_again_was_lost():
    text = log(
        BOOT,
        f"eval {A} primary started in slot 0",
        f"eval {B} shadow started in slot 1",
        f"eval {B} shadow ended completed (0) in 5 ms",
        BOOT,
        f"eval {A} primary started in slot 0",
        f"eval {A} primary ended completed (0) in 5 ms",
    )
    starts = starts_in_log(text)
    assert starts[(A, "primary")] == Starts(started=2, lost=1)
    assert starts[(A, "primary")].executed == 1
    assert starts[(B, "shadow")] == Starts(started=1, lost=0)


def test_a_run_still_going_is_not_lost():
    assert starts_in_log(log(BOOT, f"eval {A} primary started in slot 0")) == {
        (A, "primary"): Starts(1, 0)
    }


def test_two_starts_that_both_ended_are_a_program_executed_twice_across_executors():
    one = starts_in_log(
        log(
            BOOT,
            f"eval {A} primary started in slot 0",
            f"eval {A} primary ended failed (killed) in 5 ms",
        )
    )
    two = starts_in_log(
        log(BOOT, f"eval {A} primary started in slot 2", f"eval {B} primary started in slot 3")
    )
    total = merge([one, two])
    assert total[(A, "primary")] == Starts(2, 0)
    assert executed_twice(total, [A, B]) == [(A, "primary")]
    assert executed_twice(total, [B]) == []


def test_roles_are_runs_of_their_own():
    text = log(f"eval {A} primary started in slot 0", f"eval {A} shadow started in slot 1")
    assert executed_twice(starts_in_log(text), [A]) == []


def test_a_forged_line_inside_a_message_is_not_a_start():
    text = log(f"program said: eval {A} primary started in slot 0")
    assert starts_in_log(text) == {}
