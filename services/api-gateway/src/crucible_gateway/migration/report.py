"""What operators read during a migration: the report over a window, and one evaluation's comparison."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from crucible_contracts.errors import InvalidInput, NotFound
from crucible_contracts.models import EvaluationView
from crucible_contracts.names import Role
from crucible_gateway.migration.models import MigrationDocument, MigrationReport, SettingsSummary
from crucible_gateway.migration.normalisation import ComparisonRules
from crucible_gateway.migration.side_by_side import SideBySide, side_by_side
from crucible_gateway.migration.store import MigrationStore
from crucible_runtime.clients import StorageClient

MIN_WINDOW_SECONDS = 1.0
MAX_WINDOW_SECONDS = 30 * 24 * 3600.0
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_window(text: str) -> float:
    """`"90"` / `"90s"`, `"15m"`, `"1h"`, `"7d"` → seconds; InvalidInput naming the field otherwise."""
    match = _WINDOW.match(text)
    if match is None:
        raise InvalidInput("window", f"must be a duration such as 300, 15m, 1h or 7d, got {text!r}")
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not MIN_WINDOW_SECONDS <= seconds <= MAX_WINDOW_SECONDS:
        raise InvalidInput(
            "window",
            f"must be between {MIN_WINDOW_SECONDS:g}s and {MAX_WINDOW_SECONDS / 86400:g} days",
            minimum=MIN_WINDOW_SECONDS,
            maximum=MAX_WINDOW_SECONDS,
        )
    return seconds


def migration_report(
    *,
    storage: StorageClient,
    store: MigrationStore,
    document: MigrationDocument,
    window: str,
    samples: int,
    now: datetime | None = None,
) -> MigrationReport:
    """Per path: volume, success and error rates, latencies over `window`; comparison outcomes
    with up to `samples` examples each; the guard's latest status. InvalidInput for a bad window."""
    seconds = parse_window(window)
    now = now or datetime.now(UTC)
    stats = storage.stats(since=now - timedelta(seconds=seconds), until=now, samples=samples)
    return MigrationReport(
        window_seconds=seconds,
        since=stats.since,
        until=stats.until,
        settings=SettingsSummary(
            version=document.version,
            celery_enabled=document.celery_enabled,
            celery_percentage=document.celery_percentage,
            mode=document.mode.value,
            shadow_percentage=document.shadow_percentage,
            force_legacy=document.force_legacy,
            rules_version=document.comparison.rules_version,
            ramp_active=document.ramp.active,
        ),
        paths=stats.paths,
        comparisons=stats.comparisons,
        guard=store.guard_status(),
    )


def comparison_of(
    *, evaluation: EvaluationView, storage: StorageClient, rules: ComparisonRules
) -> SideBySide:
    """The side-by-side view of a shadowed evaluation; NotFound when it has no shadow run."""
    eval_id = evaluation.eval_id
    if not any(run.role is Role.SHADOW for run in evaluation.runs):
        raise NotFound(
            f"evaluation {eval_id} has no shadow run, so nothing to compare", eval_id=eval_id
        )
    try:
        comparison = storage.get_comparison(eval_id)
    except NotFound:
        comparison = None
    return side_by_side(evaluation, comparison, rules)
