"""The queue-worker's client of the queue-service HTTP API (typed, errors from the contract tree)."""

from __future__ import annotations

from crucible_queue.models import Delivery, RequeueBody
from crucible_runtime.clients import InternalClient


class QueueClient(InternalClient):
    def next_task(self) -> Delivery | None:
        """Lease the next task; None when the queue is empty. Unavailable when unreachable."""
        response = self.request("GET", "/tasks/next")
        if response.status_code == 204:
            return None
        return Delivery.model_validate_json(response.content)

    def complete(self, task_id: str) -> None:
        self.request("POST", f"/tasks/{task_id}/complete")

    def fail(self, task_id: str, reason: str) -> None:
        self.request("POST", f"/tasks/{task_id}/fail", json={"reason": reason[:2000]})

    def requeue(self, task_id: str, *, reason: str, count_attempt: bool = False) -> None:
        body = RequeueBody(reason=reason[:2000], count_attempt=count_attempt)
        self.request("POST", f"/tasks/{task_id}/requeue", json=body.model_dump())
