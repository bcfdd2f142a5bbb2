"""An evaluation's latency split from the driver's and storage's timestamps."""

from __future__ import annotations

import pytest

from crucible_bench.timeline import (
    PARTS,
    Evaluation,
    count_by,
    epoch,
    span_seconds,
    split,
    split_summaries,
)
from crucible_contracts.ids import new_eval_id

T0 = 1_800_000_000.0
# Epoch seconds as floats resolve to about 0.2 us here: compare milliseconds to a microsecond.
US = 1e-3


def evaluation(offset: float = 0.0, **fields) -> Evaluation:
    """Sent at T0+offset; 202 after 8 ms; created 5 ms in; running 30 ms in; finished 90 ms in;
    seen 100 ms in."""
    base = T0 + offset
    values = {
        "eval_id": new_eval_id(),
        "kind": "quick",
        "backend": "celery",
        "sent_at": base,
        "accepted_at": base + 0.008,
        "status": "completed",
        "created_at": base + 0.005,
        "started_at": base + 0.030,
        "completed_at": base + 0.090,
        "seen_at": base + 0.100,
        "noticed_by": "event",
    }
    return Evaluation(**{**values, **fields})


def test_split_of_one_evaluation_in_milliseconds():
    parts = split(evaluation())
    assert parts == pytest.approx(
        {"submit": 8.0, "queue_wait": 25.0, "run": 60.0, "visibility": 10.0, "end_to_end": 100.0},
        abs=US,
    )


def test_parts_never_reached_are_none():
    rejected = evaluation(
        status="http_503", created_at=None, started_at=None, completed_at=None, seen_at=None
    )
    parts = split(rejected)
    assert parts["submit"] == pytest.approx(8.0, abs=US)
    assert [parts[name] for name in ("queue_wait", "run", "visibility", "end_to_end")] == [
        None,
        None,
        None,
        None,
    ]


def test_cancelled_while_queued_has_no_run_part():
    parts = split(evaluation(started_at=None))
    assert parts["queue_wait"] is None
    assert parts["run"] is None
    assert parts["visibility"] == pytest.approx(10.0, abs=US)


def test_summaries_cover_every_part_over_the_evaluations_that_reached_it():
    summaries = split_summaries([evaluation(0), evaluation(1, started_at=None)])
    assert set(summaries) == set(PARTS)
    assert summaries["end_to_end"].count == 2
    assert summaries["run"].count == 1


@pytest.mark.parametrize(
    "moment",
    [
        "2027-01-15T08:00:00+00:00",
        "2027-01-15T08:00:00Z",
        "2027-01-15T08:00:00",
        "2027-01-15T09:00:00+01:00",
    ],
)
def test_epoch_reads_the_apis_timestamps_as_utc(moment):
    assert epoch(moment) == T0  # 2027-01-15T08:00:00Z


def test_epoch_keeps_microseconds():
    assert epoch("2027-01-15T08:00:00.250000Z") - epoch("2027-01-15T08:00:00Z") == pytest.approx(
        0.25
    )


def test_epoch_of_a_missing_moment_is_none():
    assert epoch(None) is None
    assert epoch("") is None


def test_span_runs_from_the_first_post_to_the_last_seen():
    evaluations = [evaluation(0), evaluation(2), evaluation(1)]
    assert span_seconds(evaluations) == pytest.approx(2.1)


def test_span_without_any_seen_is_zero():
    assert span_seconds([evaluation(seen_at=None)]) == 0.0


def test_count_by_a_field():
    evaluations = [evaluation(0), evaluation(1, status="failed"), evaluation(2, noticed_by="poll")]
    assert count_by(evaluations, "status") == {"completed": 2, "failed": 1}
    assert count_by(evaluations, "noticed_by") == {"event": 2, "poll": 1}
