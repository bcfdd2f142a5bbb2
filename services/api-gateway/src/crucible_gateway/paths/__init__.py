"""The two paths an evaluation can take (legacy queue-service, Celery broker), behind one `Paths`.

`routing` decides which path an evaluation takes; `legacy_client` and `celery_client` hand it over.
"""

from __future__ import annotations

from dataclasses import dataclass

from crucible_contracts.models import EvalTask
from crucible_contracts.names import Backend
from crucible_gateway.paths.celery_client import CeleryDispatcher
from crucible_gateway.paths.legacy_client import LegacyQueueClient


@dataclass(frozen=True)
class Paths:
    """The two ways to hand over an evaluation, behind one call."""

    legacy: LegacyQueueClient
    celery: CeleryDispatcher

    def submit(self, backend: Backend, task: EvalTask) -> None:
        """Raises a CrucibleError (Unavailable, Busy, ...) when `backend` did not take `task`."""
        if backend is Backend.CELERY:
            self.celery.submit(task)
        else:
            self.legacy.submit(task)
