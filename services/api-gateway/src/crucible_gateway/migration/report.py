"""What operators read during a migration: one evaluation's runs side by side, and the report."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

from crucible_contracts.clients import StorageClient
from crucible_contracts.errors import InvalidInput, NotFound
from crucible_contracts.ids import is_eval_id
from crucible_contracts.models import ComparisonStats, PathStats
from crucible_contracts.names import Backend, Role
from crucible_gateway.migration.comparison import ComparisonRules, SideBySide, side_by_side
from crucible_gateway.migration.store import GuardStatus, MigrationDocument, MigrationStore

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


class SettingsSummary(BaseModel):
    version: int
    celery_enabled: bool
    celery_percentage: float
    mode: str
    shadow_percentage: float
    force_legacy: bool
    rules_version: int
    ramp_active: bool


class MigrationReport(BaseModel):
    """`GET /api/migration/report`: the window's evidence for (or against) moving on."""

    window_seconds: float
    since: datetime
    until: datetime
    settings: SettingsSummary
    paths: dict[Backend, PathStats]
    comparisons: ComparisonStats
    guard: GuardStatus | None


def migration_report(
    *,
    storage: StorageClient,
    store: MigrationStore,
    document: MigrationDocument,
    window: str,
    samples: int,
    now: datetime | None = None,
) -> MigrationReport:
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


def comparison_of(*, eval_id: str, storage: StorageClient, rules: ComparisonRules) -> SideBySide:
    """The side-by-side view of a shadowed evaluation; NotFound when it has no shadow run."""
    if not is_eval_id(eval_id):
        raise NotFound(f"no evaluation {eval_id!r}", eval_id=eval_id)
    evaluation = storage.get_evaluation(eval_id)
    if not any(run.role is Role.SHADOW for run in evaluation.runs):
        raise NotFound(
            f"evaluation {eval_id} has no shadow run, so nothing to compare", eval_id=eval_id
        )
    try:
        comparison = storage.get_comparison(eval_id)
    except NotFound:
        comparison = None
    return side_by_side(evaluation, comparison, rules)
