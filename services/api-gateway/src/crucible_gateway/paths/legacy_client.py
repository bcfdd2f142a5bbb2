"""Submitting evaluations to the legacy path: the queue-service's HTTP API."""

from __future__ import annotations

from typing import Any

from crucible_contracts.models import EvalTask
from crucible_runtime.clients import InternalClient


class LegacyQueueClient(InternalClient):
    """`POST /tasks` and `GET /status` of the queue-service; failures raise the contracts' errors."""

    def submit(self, task: EvalTask) -> None:
        """Hand `task` to the legacy deque. Raises Unavailable (down) or Busy (full)."""
        self.request("POST", "/tasks", json=task.model_dump(mode="json"))

    def queue_status(self, *, timeout: float | None = None) -> dict[str, Any]:
        """The queue-service's own report of its depth (queued, processing, ...)."""
        kwargs = {} if timeout is None else {"timeout": timeout}
        return self.request("GET", "/status", **kwargs).json()

    def ping(self, *, timeout: float | None = None) -> None:
        kwargs = {} if timeout is None else {"timeout": timeout}
        self.request("GET", "/health", **kwargs)

    def cancel(self, task_id: str) -> None:
        """Take a still-queued task out of the deque. NotFound when not queued, Conflict when
        the queue-worker is already processing it."""
        self.request("DELETE", f"/tasks/{task_id}")
