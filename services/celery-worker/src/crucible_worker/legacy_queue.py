"""The reconciler's client of the legacy queue-service: where a run is, and enqueue it again.

Only the two calls the reconciler needs, in the contract's terms (an EvalTask, a task's state);
the queue-service's own models and wire format stay in the queue-service.
"""

from __future__ import annotations

from crucible_contracts.errors import Conflict, NotFound
from crucible_contracts.models import EvalTask
from crucible_contracts.names import Role, task_id_for
from crucible_runtime.clients import InternalClient


class LegacyQueue(InternalClient):
    def state_of(self, eval_id: str, role: Role) -> str | None:
        """`queued`, `processing`, `completed`, `failed` or `cancelled`; None when the queue does
        not know the task (its deque was lost in a restart, or it forgot it long ago)."""
        try:
            response = self.request("GET", f"/tasks/{task_id_for(eval_id, role)}")
        except NotFound:
            return None
        return str(response.json()["state"])

    def enqueue(self, task: EvalTask) -> bool:
        """Append `task`; False when the queue already holds it (queued or processing).
        Busy when the queue is full, Unavailable when the queue-service cannot be reached."""
        try:
            self.request("POST", "/tasks", json=task.model_dump(mode="json"))
        except Conflict:
            return False
        return True
