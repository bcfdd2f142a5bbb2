"""The migration domain's models: the settings in force, the shared document, audit, API bodies."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, Strict

from crucible_contracts.limits import INT32_MAX, MAX_WINDOW_SECONDS
from crucible_contracts.models import ComparisonStats, PathStats, UnicodeText
from crucible_contracts.names import Backend
from crucible_gateway.migration.guard import GuardSettings, RampSettings, Verdict
from crucible_gateway.migration.hysteresis import GuardStreak
from crucible_gateway.migration.normalisation import ComparisonRules

# --- the settings in force (what the routing decision reads) --------------------------------------


class MigrationMode(StrEnum):
    SPLIT = "split"
    SHADOW = "shadow"


class MigrationSettings(BaseModel):
    """The traffic split in force. `celery_percentage` is a share in [0, 1], not 0-100."""

    celery_enabled: bool = False
    celery_percentage: float = Field(default=0.0, ge=0.0, le=1.0)
    mode: MigrationMode = MigrationMode.SPLIT
    shadow_percentage: float = Field(default=0.0, ge=0.0, le=1.0)
    force_legacy: bool = False

    @property
    def shadowing(self) -> bool:
        """Whether shadow runs may be dispatched at all: shadow mode, Celery on, legacy not forced.

        Pausing (force_legacy) stops shadow runs too: an operator who pulled traffic off Celery
        because it misbehaves does not want it fed with copies either.
        """
        return (
            self.mode is MigrationMode.SHADOW
            and self.celery_enabled
            and not self.force_legacy
            and self.shadow_percentage > 0
        )


# --- the shared document, its audit log and the guard's status ------------------------------------


class _Versioned(BaseModel):
    version: int = Field(default=0, ge=0)


# The document *is* the settings in force, plus what goes with them; it extends MigrationSettings
# rather than nesting it, because the admin API serves the document and DESIGN.md fixes its split
# fields at the top level. `_Versioned` comes last among the bases only so that `version` stays
# the first field, as the stored JSON and the OpenAPI document always had it.
class MigrationDocument(MigrationSettings, _Versioned):
    """The migration settings every gateway replica follows. Version 0 = the environment's seed."""

    model_config = ConfigDict(extra="ignore")

    comparison: ComparisonRules = Field(default_factory=ComparisonRules)
    guard: GuardSettings = Field(default_factory=GuardSettings)
    ramp: RampSettings = Field(default_factory=RampSettings)
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    updated_by: str = "environment"

    def settings(self) -> MigrationSettings:
        """What the routing decision reads: a copy of the settings part, detached from the document."""
        return MigrationSettings.model_validate(
            self.model_dump(include=set(MigrationSettings.model_fields))
        )

    @classmethod
    def seed_from(cls, settings: MigrationSettings) -> MigrationDocument:
        """Version 1, built from the environment's settings."""
        return cls(version=1, updated_by="environment", **settings.model_dump())


# Editable fields that are nested settings: a change names only the sub-fields it changes.
NESTED_FIELDS = ("comparison", "guard", "ramp")
# The fields an operator may change; everything else (version, updated_*) the store sets.
EDITABLE_FIELDS = (*MigrationSettings.model_fields, *NESTED_FIELDS)


class GuardStatus(BaseModel):
    """One decision of the leader's guard: what it judged (the window, every check's value,
    threshold and sample counts, in `verdict`), the breach streak after it, and what it did."""

    evaluated_at: datetime
    leader: str
    document_version: int
    state: str = Field(description="evaluated | disabled | idle (Celery takes no traffic)")
    since: datetime | None = None
    # The start of the recent window breached checks were confirmed on (see hysteresis).
    recent_since: datetime | None = None
    verdict: Verdict | None = None
    streak: int = Field(default=0, description="consecutive breaches, this one included")
    breach_after: int | None = Field(default=None, description="the streak that acts")
    action: str | None = Field(default=None, description="guard_rollback | ramp_promote | None")
    action_detail: str | None = None


class GuardReport(BaseModel):
    """`GET /api/admin/migration/guard`: the latest decision, the streak, the recent decisions."""

    latest: GuardStatus | None = Field(
        description="the leader's latest decision; null when no leader evaluated lately"
    )
    streak: GuardStreak | None = Field(description="the current streak of consecutive breaches")
    decisions: list[GuardStatus] = Field(description="the most recent decisions, newest first")


# --- request bodies of the admin API --------------------------------------------------------------


class VersionedWrite(UnicodeText):
    """What every write names: the version it was based on, and why it is made."""

    model_config = ConfigDict(extra="forbid", strict=True)

    expected_version: int = Field(ge=0, le=INT32_MAX)
    reason: str = Field(min_length=1, max_length=10_000, pattern=r"\S")


class MigrationUpdate(VersionedWrite):
    """`PUT /api/admin/migration`: any of the editable fields; absent ones stay as they are."""

    celery_enabled: bool | None = None
    celery_percentage: float | None = Field(default=None, ge=0.0, le=1.0)
    mode: Annotated[MigrationMode, Strict(False)] | None = None
    shadow_percentage: float | None = Field(default=None, ge=0.0, le=1.0)
    force_legacy: bool | None = None
    # Nested settings: only the sub-fields given change (see MigrationDocument for their fields).
    comparison: dict[str, Any] | None = None
    guard: dict[str, Any] | None = None
    ramp: dict[str, Any] | None = None

    def changes(self) -> dict[str, Any]:
        fields = self.model_dump(exclude_unset=True, exclude={"expected_version", "reason"})
        return {name: value for name, value in fields.items() if value is not None}


class Promote(VersionedWrite):
    """`POST /api/admin/migration/promote`: Celery on, split mode, legacy not forced, this share."""

    celery_percentage: float = Field(ge=0.0, le=1.0)


class StartRamp(VersionedWrite):
    """`POST /api/admin/migration/ramp`: promote step by step while every guard check passes."""

    steps: list[float] | None = None
    hold_seconds: float | None = Field(
        default=None, gt=0, le=MAX_WINDOW_SECONDS, allow_inf_nan=False
    )


# --- GET /api/migration/report --------------------------------------------------------------------


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
