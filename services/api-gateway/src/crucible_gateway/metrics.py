"""The gateway's Prometheus metrics: counters of what was submitted where, what fell back, what
failed and what the leader's rounds did; and, read at scrape time by collectors, every queue's
depth and oldest age, the split in force and the guard's latest judgment."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import redis
from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from crucible_contracts.errors import CrucibleError
from crucible_contracts.models import ComparisonOutcome
from crucible_contracts.names import Backend
from crucible_gateway.migration.models import MigrationMode
from crucible_gateway.queue_readings import SOURCES, CachedQueueReader

if TYPE_CHECKING:
    from crucible_gateway.migration.guard import Verdict
    from crucible_gateway.migration.source import RedisMigrationSource
    from crucible_gateway.migration.store import MigrationStore

log = logging.getLogger(__name__)

SUBMITTED = Counter(
    "crucible_gateway_evaluations_submitted_total",
    "Evaluations accepted and dispatched, by the backend that took them",
    ["backend"],
)
FALLBACKS = Counter(
    "crucible_gateway_fallbacks_total",
    "Evaluations dispatched to the other path because the chosen one could not take them",
    ["from_backend", "to_backend"],
)
DISPATCH_FAILURES = Counter(
    "crucible_gateway_dispatch_failures_total",
    "Attempts to hand an evaluation to a path that failed",
    ["backend"],
)
NO_PATH = Counter(
    "crucible_gateway_no_path_total",
    "Evaluations that neither path could take (recorded as error, answered 503)",
)
SHADOWS = Counter(
    "crucible_gateway_shadow_runs_total",
    "Shadow runs dispatched, by the backend that took them (result=ok), refused them (left "
    "queued for the reconciler, result=refused) or could not be recorded (result=error)",
    ["backend", "result"],
)
COMPARISONS = Counter(
    "crucible_gateway_comparisons_total",
    "Comparisons of a primary and a shadow run recorded by the leader's sweep, by outcome",
    ["outcome"],
)
GUARD_DECISIONS = Counter(
    "crucible_gateway_guard_decisions_total",
    "Rollback guard evaluations by the leader, by decision (pass, inconclusive, breach) and "
    "reason (the check that decided it: error_rate, mismatch_rate, p95_latency_ratio; "
    "all_passed for a pass)",
    ["decision", "reason"],
)
GUARD_ACTIONS = Counter(
    "crucible_gateway_guard_actions_total",
    "Settings changes made by the leader's guard and ramp (guard_rollback, ramp_promote)",
    ["action"],
)
HOUSEKEEPING_ROUNDS = Counter(
    "crucible_housekeeping_rounds_total",
    "Housekeeping rounds run by the leader, by job (reconcile, purge) and outcome (done; skipped: "
    "storage could not be reached; stopped: the replica lost the lead mid-round)",
    ["job", "outcome"],
)
HOUSEKEEPING_RUNS = Counter(
    "crucible_housekeeping_runs_total",
    "Stuck runs the reconciler looked at, by what became of them (waiting, redispatched, "
    "ended_error, changed_meanwhile, failed)",
    ["action"],
)
HOUSEKEEPING_PURGED = Counter(
    "crucible_housekeeping_purged_total",
    "Evaluations deleted by the purge for being older than RETENTION_DAYS",
)
RATE_LIMITED = Counter(
    "crucible_gateway_rate_limited_total",
    "Requests refused with 429 because their tenant spent its request rate, by tenant",
    ["tenant"],
)
RATE_LIMIT_UNCHECKED = Counter(
    "crucible_gateway_rate_limit_unchecked_total",
    "Requests let through without a rate-limit check because the state Redis failed (fail-open)",
)


ALL_PASSED = "all_passed"
GUARD_CHECKS = ("error_rate", "mismatch_rate", "p95_latency_ratio")


def _zeroed() -> None:
    """Every series of a bounded label set exists from the start, at 0: a rate over a series
    that appears only with its first event misses that event, and an alert on it never fires."""
    for backend in Backend:
        SUBMITTED.labels(backend.value)
        DISPATCH_FAILURES.labels(backend.value)
        FALLBACKS.labels(backend.value, backend.other.value)
    for outcome in ComparisonOutcome:
        COMPARISONS.labels(outcome.value)
    GUARD_DECISIONS.labels("pass", ALL_PASSED)
    for decision in ("breach", "inconclusive"):
        for check in GUARD_CHECKS:
            GUARD_DECISIONS.labels(decision, check)
    for action in ("guard_rollback", "ramp_promote"):
        GUARD_ACTIONS.labels(action)


_zeroed()


def deciding_check(verdict: Verdict) -> str:
    """The check that made `verdict`'s decision (the first one with that verdict), or
    ALL_PASSED: a bounded label for GUARD_DECISIONS."""
    wanted = {"breach": {"breach"}, "inconclusive": {"inconclusive", "recovered"}}
    for check in verdict.checks:
        if check.verdict in wanted.get(verdict.decision, ()):
            return check.name
    return ALL_PASSED


# --- read at scrape time ------------------------------------------------------------------------


class QueueCollector(Collector):
    """`crucible_queue_*`: every queue's depth and oldest age (`queue_readings`), cached briefly."""

    def __init__(self) -> None:
        self.reader: CachedQueueReader | None = None

    def collect(self) -> Iterator[Metric]:
        if self.reader is None:
            return
        readings = self.reader.read()
        depth = GaugeMetricFamily(
            "crucible_queue_depth",
            "Messages waiting in each queue, not yet taken by a consumer (legacy, the Celery "
            "queues, dead_letter)",
            labels=["queue"],
        )
        age = GaugeMetricFamily(
            "crucible_queue_oldest_age_seconds",
            "Age of each queue's oldest waiting message (0 when empty; absent when unknown)",
            labels=["queue"],
        )
        for reading in readings.queues:
            depth.add_metric([reading.queue], reading.depth)
            if reading.oldest_age_seconds is not None:
                age.add_metric([reading.queue], reading.oldest_age_seconds)
        up = GaugeMetricFamily(
            "crucible_queue_source_up",
            "Whether the gateway could read each source of queue readings at the last scrape",
            labels=["source"],
        )
        for source in SOURCES:
            up.add_metric([source], 0.0 if source in readings.errors else 1.0)
        yield from (depth, age, up)


class MigrationCollector(Collector):
    """The split this replica applies (from memory) and the leader's latest guard judgment (one
    Redis read; left out when it cannot be read or no leader judged lately)."""

    def __init__(self) -> None:
        self.source: RedisMigrationSource | None = None
        self.store: MigrationStore | None = None

    def collect(self) -> Iterator[Metric]:
        if self.source is not None:
            yield from _split(self.source)
        if self.store is not None:
            yield from _guard(self.store)


def _split(source: RedisMigrationSource) -> Iterator[Metric]:
    settings = source.current()
    on = settings.celery_enabled and not settings.force_legacy
    share = GaugeMetricFamily(
        "crucible_gateway_celery_share_ratio",
        "Share of new evaluations this replica sends to Celery, by role (primary: the split; "
        "shadow: the shadow share); 0 while Celery is off or legacy is forced",
        labels=["role"],
    )
    share.add_metric(["primary"], settings.celery_percentage if on else 0.0)
    share.add_metric(["shadow"], settings.shadow_percentage if settings.shadowing else 0.0)
    mode = GaugeMetricFamily(
        "crucible_gateway_migration_mode",
        "The migration mode in force (1 for the current one)",
        labels=["mode"],
    )
    for each in MigrationMode:
        mode.add_metric([each.value], 1.0 if settings.mode is each else 0.0)
    yield share
    yield mode
    yield GaugeMetricFamily(
        "crucible_gateway_force_legacy",
        "1 while every evaluation is forced to the legacy path",
        value=1.0 if settings.force_legacy else 0.0,
    )
    yield GaugeMetricFamily(
        "crucible_gateway_migration_version",
        "Version of the migration settings this replica applies",
        value=source.status()["version"],
    )


def _guard(store: MigrationStore) -> Iterator[Metric]:
    try:
        status = store.guard_status()
    except (CrucibleError, redis.RedisError, ValueError) as exc:
        log.warning("guard status not readable for /metrics: %s", exc)
        return
    if status is None or status.verdict is None:
        return
    value = GaugeMetricFamily(
        "crucible_gateway_guard_check_value",
        "The measure of each guard check at the leader's latest judgment (ratios 0-1; the "
        "latency check a ratio of p95s)",
        labels=["check"],
    )
    threshold = GaugeMetricFamily(
        "crucible_gateway_guard_check_threshold",
        "The threshold each guard check's value is held to at the latest judgment",
        labels=["check"],
    )
    for check in status.verdict.checks:
        if check.value is not None:
            value.add_metric([check.name], check.value)
        if check.threshold is not None:
            threshold.add_metric([check.name], check.threshold)
    yield value
    yield threshold
    yield GaugeMetricFamily(
        "crucible_gateway_guard_breach_streak",
        "Consecutive breached guard judgments, the latest included",
        value=status.streak,
    )
    if status.breach_after is not None:
        yield GaugeMetricFamily(
            "crucible_gateway_guard_breach_after",
            "The breach streak at which the guard rolls the Celery share back",
            value=status.breach_after,
        )


_QUEUES = QueueCollector()
_MIGRATION = MigrationCollector()
_REGISTERED = False


def expose(
    *, queues: CachedQueueReader, source: RedisMigrationSource, store: MigrationStore
) -> None:
    """Make this process's `/metrics` read these (the latest `create_app`'s): collectors are
    registered once per process and pointed again by each app."""
    global _REGISTERED
    if not _REGISTERED:
        REGISTRY.register(_QUEUES)
        REGISTRY.register(_MIGRATION)
        _REGISTERED = True
    _QUEUES.reader = queues
    _MIGRATION.source, _MIGRATION.store = source, store
