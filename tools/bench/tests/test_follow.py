"""Which of storage's status events tell the driver that an evaluation has ended."""

from __future__ import annotations

import json

import pytest

from crucible_bench.follow import ended_eval_id, ended_event


def event(**fields) -> str:
    values = {
        "eval_id": "a" * 32,
        "event": "eval.status_changed",
        "role": "primary",
        "status": "completed",
        "at": "2027-01-15T08:00:00Z",
        "detail": {},
    }
    return json.dumps({**values, **fields})


@pytest.mark.parametrize("status", ["completed", "failed", "timeout", "cancelled", "error"])
def test_a_terminal_status_of_the_primary_run_ends_the_evaluation(status):
    assert ended_eval_id(event(status=status)) == "a" * 32


@pytest.mark.parametrize("status", ["queued", "running"])
def test_a_status_on_the_way_does_not(status):
    assert ended_eval_id(event(status=status)) is None


def test_the_shadow_runs_end_is_not_what_the_client_sees():
    assert ended_eval_id(event(role="shadow")) is None


def test_bytes_from_redis_are_read_too():
    assert ended_eval_id(event().encode()) == "a" * 32


@pytest.mark.parametrize(
    "message",
    ["not json", "[]", json.dumps({"eval_id": "x"}), event(status=None), event(eval_id=None)],
)
def test_malformed_messages_are_ignored(message):
    assert ended_eval_id(message) is None


def test_the_end_event_hands_over_the_finished_evaluation_it_carries():
    finished = {"eval_id": "a" * 32, "status": "completed", "output": "1\n"}
    assert ended_event(event(evaluation=finished)) == ("a" * 32, finished)
    # Without it (an older storage), the driver reads the evaluation itself.
    assert ended_event(event()) == ("a" * 32, None)
    assert ended_event(event(evaluation="not an object")) == ("a" * 32, None)
