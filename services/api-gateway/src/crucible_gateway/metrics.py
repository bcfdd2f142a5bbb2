"""The gateway's Prometheus counters: what was submitted where, what fell back, what failed, and
what the leader's rounds did."""

from __future__ import annotations

from prometheus_client import Counter

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
    "Rollback guard evaluations by the leader, by decision (pass, inconclusive, breach)",
    ["decision"],
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
