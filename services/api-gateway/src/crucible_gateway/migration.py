"""Where the migration settings in force come from; the routing decision never knows which source."""

from __future__ import annotations

from typing import Protocol

from crucible_gateway.routing import MigrationSettings


class MigrationSource(Protocol):
    def current(self) -> MigrationSettings:
        """The settings in force now; called once per submitted evaluation."""
        ...


class StaticMigrationSource:
    """The split fixed at start from the environment (CELERY_ENABLED, CELERY_PERCENTAGE, ...)."""

    def __init__(self, settings: MigrationSettings) -> None:
        self._settings = settings

    def current(self) -> MigrationSettings:
        return self._settings
