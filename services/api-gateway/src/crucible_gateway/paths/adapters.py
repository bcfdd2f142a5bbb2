"""The two paths as `Path`s: the legacy queue-service client and the Celery dispatcher, one shape."""

from __future__ import annotations

from typing import Any

from crucible_contracts.models import EvalTask
from crucible_contracts.names import Backend, Role, task_id_for
from crucible_gateway.paths.celery_client import CeleryDispatcher
from crucible_gateway.paths.legacy_client import LegacyQueueClient


class LegacyPath:
    """The legacy path: the queue-service's deque, over its HTTP API."""

    backend = Backend.LEGACY
    dependency = "queue_service"

    def __init__(self, client: LegacyQueueClient) -> None:
        self.client = client

    def submit(self, task: EvalTask) -> None:
        self.client.submit(task)

    def withdraw(self, eval_id: str, role: Role) -> None:
        """Take the task out of the deque (NotFound when not queued, Conflict when processing)."""
        self.client.cancel(task_id_for(eval_id, role))

    def depth(self, *, timeout: float) -> dict[str, Any]:
        """The queue-service's own `/status` (queued, processing, ...)."""
        return self.client.queue_status(timeout=timeout)

    def ping(self, *, timeout: float) -> None:
        self.client.ping(timeout=timeout)

    def close(self) -> None:
        self.client.close()


class CeleryPath:
    """The Celery path: tasks published by name on the broker."""

    backend = Backend.CELERY
    dependency = "broker"

    def __init__(self, dispatcher: CeleryDispatcher) -> None:
        self.dispatcher = dispatcher

    def submit(self, task: EvalTask) -> None:
        self.dispatcher.submit(task)

    def withdraw(self, eval_id: str, role: Role) -> None:
        """Revoke the task: a hint to the workers, who also check storage before they start it."""
        self.dispatcher.revoke(task_id_for(eval_id, role))

    def depth(self, *, timeout: float) -> dict[str, Any]:
        """`{"queues": {queue: waiting}, "total"}`. The broker client's own connect timeout
        (BROKER_CONNECT_TIMEOUT) bounds the call, not `timeout`."""
        depths = self.dispatcher.queue_depths()
        return {"queues": depths, "total": sum(depths.values())}

    def ping(self, *, timeout: float) -> None:
        """Bounded by BROKER_CONNECT_TIMEOUT, as `depth` is."""
        self.dispatcher.ping()

    def close(self) -> None:
        self.dispatcher.close()
