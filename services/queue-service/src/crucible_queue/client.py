"""The queue-worker's client of the queue-service: the one queue-service client, plus leases and acks."""

from __future__ import annotations

import json

from pydantic import ValidationError

from crucible_queue.models import Lease, RequeueBody
from crucible_runtime.clients import QueueServiceClient


class MalformedLease(Exception):
    """The queue-service leased a task that does not validate: it must be failed, not run.

    `task_id` is what the answer said (None when it did not even say that); `body` is the raw
    answer, kept for the dead-letter entry.
    """

    def __init__(self, reason: str, *, task_id: str | None, body: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.task_id = task_id
        self.body = body


class QueueClient(QueueServiceClient):
    """`QueueServiceClient` and the consumer's calls: lease the next task, then ack it (complete,
    fail or requeue). Errors come from the contract tree."""

    def next_task(self, *, wait: float = 0.0) -> Lease | None:
        """Lease the next task, waiting up to `wait` seconds for one; None when the queue stays
        empty. Unavailable when unreachable, MalformedLease when the task does not validate."""
        # A GET that takes a lease: repeated after a lost answer, it would lease a second task
        # and leave the first held until its lease runs out. The worker polls again instead.
        params = {"wait": wait} if wait > 0 else None
        response = self.request(
            "GET", "/tasks/next", idempotent=False, params=params, timeout=wait + 10
        )
        if response.status_code == 204:
            return None
        try:
            return Lease.model_validate_json(response.content)
        except ValidationError as exc:
            body = response.content[:4096].decode(errors="replace")
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'task'}: {e['msg']}" for e in exc.errors()[:5]
            )
            raise MalformedLease(
                f"malformed task: {problems}", task_id=_task_id_of(response.content), body=body
            ) from exc

    def renew(self, task_id: str) -> None:
        """Extend the lease of a task this consumer holds; Conflict once it lost the lease."""
        self.request("POST", f"/tasks/{task_id}/renew")

    def complete(self, task_id: str) -> None:
        self.request("POST", f"/tasks/{task_id}/complete")

    def fail(self, task_id: str, reason: str) -> None:
        self.request("POST", f"/tasks/{task_id}/fail", json={"reason": reason[:2000]})

    def requeue(self, task_id: str, *, reason: str, count_attempt: bool = False) -> None:
        body = RequeueBody(reason=reason[:2000], count_attempt=count_attempt)
        self.request("POST", f"/tasks/{task_id}/requeue", json=body.model_dump())


def _task_id_of(content: bytes) -> str | None:
    try:
        task_id = json.loads(content).get("task_id")
    except (ValueError, AttributeError):
        return None
    return task_id if isinstance(task_id, str) and len(task_id) <= 200 else None
