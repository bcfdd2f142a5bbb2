"""The executor's Prometheus metrics (module level: one registry per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RUNS = Counter(
    "crucible_executor_runs_total",
    "Programs run to their end, by status and reason",
    ["executor_id", "status", "reason"],
)
REJECTED = Counter(
    "crucible_executor_rejected_total",
    "POST /execute answered busy because every slot was taken",
    ["executor_id"],
)
JOINED = Counter(
    "crucible_executor_joined_total",
    "POST /execute that joined a run of the same eval_id and role instead of starting one",
    ["executor_id"],
)
COLLECTED = Counter(
    "crucible_executor_collected_total",
    "POST /execute answered with the kept result of a run that had ended (not run again)",
    ["executor_id"],
)
BUSY_SLOTS = Gauge("crucible_executor_busy_slots", "Slots running a program now", ["executor_id"])
SLOTS = Gauge("crucible_executor_slots", "Slots of this executor", ["executor_id"])
RUN_SECONDS = Histogram(
    "crucible_executor_run_seconds",
    "Wall time of a run, sandbox start-up included",
    ["executor_id", "status"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
WARM_READY = Gauge(
    "crucible_executor_warm_ready",
    "Warm sandboxes prepared and waiting for a program (at most one per slot)",
    ["executor_id"],
)
HANDOVERS = Counter(
    "crucible_executor_warm_handovers_total",
    "Programs handed to a warm sandbox",
    ["executor_id"],
)
COLD_RUNS = Counter(
    "crucible_executor_cold_runs_total",
    "Programs whose sandbox was started for them (no warm sandbox was ready, or none for the "
    "language)",
    ["executor_id", "language"],
)
WARM_DISCARDED = Counter(
    "crucible_executor_warm_discarded_total",
    "Warm sandboxes torn down without a program: idle (waited too long), died, failed (its "
    "preparation)",
    ["executor_id", "reason"],
)
WARM_PREPARE_SECONDS = Histogram(
    "crucible_executor_warm_prepare_seconds",
    "Wall time to prepare a warm sandbox (cgroup, tmpfs, spawn, interpreter start), off the "
    "request path",
    ["executor_id"],
    buckets=(0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 10),
)
