"""Storage's latency histograms of runs: observed on the transition that ends each stage, from the
timestamps of the row the compare-and-set UPDATE returned (no query of their own).

Storage sees every transition of every run on both paths, with its own clock, so these are the
one place where the latency of each path is measured the same way:

- queue wait: queued (created, or replayed) → running;
- execution: running → a terminal status (retries and the executor's run included);
- end to end: queued → a terminal status, also for runs that end without running (cancelled
  while queued, or `error` when no path could take them).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from prometheus_client import Histogram

from crucible_contracts.status import Status

# From a few milliseconds (a warm sandbox, an empty queue) to the longest timeout (300 s) plus
# its retries and grace.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

QUEUE_WAIT = Histogram(
    "crucible_run_queue_wait_seconds",
    "Time a run waited queued before it started running (queued_at → started_at), by path and role",
    ["backend", "role"],
    buckets=BUCKETS,
)
EXECUTION = Histogram(
    "crucible_run_execution_seconds",
    "Time a run spent running before it ended (started_at → completed_at), by path, role and "
    "final status",
    ["backend", "role", "status"],
    buckets=BUCKETS,
)
END_TO_END = Histogram(
    "crucible_run_end_to_end_seconds",
    "Time from a run's queueing to its end (queued_at → completed_at), by path, role and final "
    "status; its count is the runs that ended",
    ["backend", "role", "status"],
    buckets=BUCKETS,
)


def observe_transition(run: Mapping[str, Any]) -> None:
    """Observe the stage `run` (a row as the UPDATE left it) has just ended, if any.

    `queued_at` is the start of the run's current trip: its creation, or its latest replay.
    """
    status = Status(run["status"])
    backend, role = str(run["backend"]), str(run["role"])
    queued_at, started_at = run["queued_at"], run["started_at"]
    if status is Status.RUNNING:
        _observe(QUEUE_WAIT.labels(backend, role), queued_at, started_at)
    elif status.is_terminal():
        ended_at = run["completed_at"]
        _observe(EXECUTION.labels(backend, role, status.value), started_at, ended_at)
        _observe(END_TO_END.labels(backend, role, status.value), queued_at, ended_at)


def _observe(histogram: Histogram, start: datetime | None, end: datetime | None) -> None:
    # A clock step backwards would make a negative span: it counts as no wait at all.
    if start is not None and end is not None:
        histogram.observe(max(0.0, (end - start).total_seconds()))
