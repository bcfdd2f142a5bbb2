"""Where the migration settings in force come from; the routing decision never knows which source."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any, Protocol

import redis

from crucible_gateway.migration.models import MigrationDocument, MigrationSettings
from crucible_gateway.migration.store import MigrationStore

log = logging.getLogger(__name__)


class MigrationSource(Protocol):
    def current(self) -> MigrationSettings:
        """The settings in force now; called once per submitted evaluation."""
        ...


class RedisMigrationSource:
    """The shared document, cached in the process and refreshed from Redis by a background thread.

    `current()` never touches Redis. Until Redis first answers, the environment's seed is in force
    (reported stale). When Redis cannot be read, the last known document stays in force and
    `status()` says stale since when. When the document is missing (first start, or a Redis that
    lost its data), the last known document is written back with SET NX, so that no replica ever
    jumps back to the environment's values once it has seen the operators' ones.
    """

    def __init__(
        self, *, store: MigrationStore, seed: MigrationDocument, refresh_interval: float = 0.5
    ) -> None:
        self._store = store
        self._interval = refresh_interval
        self._lock = threading.Lock()
        self._document = seed
        self._settings = seed.settings()
        self._stale_since: datetime | None = datetime.now(UTC)
        self._refreshed_at: datetime | None = None
        self._error: str | None = "not read from Redis yet"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def current(self) -> MigrationSettings:
        return self._settings

    def document(self) -> MigrationDocument:
        return self._document

    def refresh(self) -> bool:
        """Read the document once (seeding it when absent); False when Redis could not be read."""
        try:
            document = self._store.load()
            if document is None:
                document = self._store.seed(self._document)
                log.warning("migration document was missing; seeded version %s", document.version)
        except (redis.RedisError, ValueError) as exc:
            with self._lock:
                if self._stale_since is None:
                    self._stale_since = datetime.now(UTC)
                    log.error(
                        "migration settings are stale (Redis: %s); keeping version %s",
                        exc,
                        self._document.version,
                    )
                self._error = str(exc) or type(exc).__name__
            return False
        self.accept(document)
        with self._lock:
            self._stale_since, self._error = None, None
            self._refreshed_at = datetime.now(UTC)
        return True

    def accept(self, document: MigrationDocument) -> None:
        """Put `document` in force (after a read, or after this replica's own write)."""
        with self._lock:
            if document != self._document:
                self._document, self._settings = document, document.settings()

    def status(self) -> dict[str, Any]:
        """Which version is in force, and whether (since when, why) it may be out of date."""
        with self._lock:
            return {
                "version": self._document.version,
                "stale": self._stale_since is not None,
                "stale_since": _iso(self._stale_since),
                "refreshed_at": _iso(self._refreshed_at),
                "error": self._error,
            }

    def start(self) -> None:
        """Read once now, then every `refresh_interval` seconds in a daemon thread until stop()."""
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="migration-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.refresh()


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
