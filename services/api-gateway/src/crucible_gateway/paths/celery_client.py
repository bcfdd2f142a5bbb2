"""Submitting evaluations to the Celery path by task name, and reading its queue depths.

The gateway never imports the worker: it publishes `tasks.evaluate_code` by name on a queue chosen
by priority. A dead broker fails fast (short connect timeout, at most one reconnect) and surfaces
as `Unavailable`, so that the caller can fall back to the legacy path.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from celery import Celery
from kombu.exceptions import KombuError
from starlette.concurrency import run_in_threadpool

from crucible_contracts.errors import Unavailable
from crucible_contracts.limits import celery_time_limits
from crucible_contracts.models import EvalTask
from crucible_contracts.names import QUEUE_ORDER, TASK_EVALUATE, Queue, Role, task_id_for
from crucible_runtime.redis_client import fail_fast_redis

log = logging.getLogger(__name__)

# One reconnect covers a pooled connection that went stale while the broker restarted; more
# would only hold the client's request while the broker is really down.
_PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
_BROKER_ERRORS = (KombuError, redis.RedisError, OSError)


# The message header carrying when the gateway published it (Unix time, seconds): kombu's Redis
# messages have no time of their own, and the age of a queue's oldest message is read from it
# (`crucible_gateway.queue_readings`).
ENQUEUED_AT_HEADER = "crucible_enqueued_at"

# The queues `queue_for` sends evaluations to: every queue but `low`.
EVALUATION_QUEUES = (Queue.HIGH, Queue.DEFAULT, Queue.SHADOW)


def queue_for(task: EvalTask) -> Queue:
    """Shadow runs have their own queue, drained last, so that they never delay user work."""
    if task.role is Role.SHADOW:
        return Queue.SHADOW
    return Queue.HIGH if task.priority else Queue.DEFAULT


class CeleryDispatcher:
    """A publish-only Celery app on one broker, with a pooled connection; thread-safe."""

    def __init__(self, broker_url: str, *, connect_timeout: float = 1.5, pool_limit: int = 10):
        self.broker_url = broker_url
        transport = {
            "socket_connect_timeout": connect_timeout,
            "socket_timeout": max(connect_timeout, 5.0),
            "max_retries": 1,
        }
        self.app = Celery("crucible_gateway", broker=broker_url, set_as_current=False)
        self.app.conf.update(
            # Results live in storage; without this Celery would take CELERY_RESULT_BACKEND from
            # the environment and make every publish depend on that Redis as well.
            result_backend="disabled",
            broker_connection_timeout=connect_timeout,
            broker_connection_retry=False,
            broker_connection_max_retries=1,
            broker_pool_limit=pool_limit,
            broker_transport_options=transport,
            task_serializer="json",
            accept_content=["json"],
            task_create_missing_queues=True,
        )
        self._redis = fail_fast_redis(broker_url, timeout=connect_timeout)

    async def submit_async(self, task: EvalTask) -> Queue:
        """`submit` from the event loop: kombu's publish is blocking I/O, so it runs in the
        threadpool. (Building the message by hand and pushing it with an async LPUSH cost a
        tenth of kombu's 0.45 ms, but it would copy Celery's task protocol and kombu's Redis
        envelope into this project, to be kept in step with every upgrade of either.)"""
        return await run_in_threadpool(self.submit, task)

    def submit(self, task: EvalTask) -> Queue:
        """Publish `task`; returns the queue it went to. Raises Unavailable when the broker is down."""
        queue = queue_for(task)
        soft, hard = celery_time_limits(task.program.timeout)
        try:
            self.app.send_task(
                TASK_EVALUATE,
                kwargs={"task": task.model_dump(mode="json")},
                task_id=task_id_for(task.eval_id, task.role),
                queue=queue.value,
                soft_time_limit=soft,
                time_limit=hard,
                retry=True,
                retry_policy=_PUBLISH_RETRY,
                ignore_result=True,
                headers={ENQUEUED_AT_HEADER: time.time()},
            )
        except _BROKER_ERRORS as exc:
            raise Unavailable(f"Celery broker unreachable: {exc!r}", backend="celery") from exc
        return queue

    def queue_depths(self) -> dict[str, int]:
        """Messages waiting in each Celery queue (LLEN on the broker). Raises Unavailable."""
        try:
            pipe = self._redis.pipeline(transaction=False)
            for queue in QUEUE_ORDER:
                pipe.llen(queue.value)
            lengths = pipe.execute()
        except redis.RedisError as exc:
            raise Unavailable(f"Celery broker unreachable: {exc!r}", backend="celery") from exc
        return {
            queue.value: int(length) for queue, length in zip(QUEUE_ORDER, lengths, strict=True)
        }

    def revoke(self, task_id: str) -> None:
        """Ask the workers not to start `task_id` (held only in their memory, so a hint: the
        task itself checks storage before it starts, which is what makes a cancel stick)."""
        try:
            self.app.control.revoke(task_id)
        except _BROKER_ERRORS as exc:
            raise Unavailable(f"Celery broker unreachable: {exc!r}", backend="celery") from exc

    def workers(self, *, timeout: float = 1.0) -> dict[str, Any]:
        """Every worker that answers within `timeout`: its stats and the queues it consumes."""
        inspect = self.app.control.inspect(timeout=timeout)
        stats = self._broadcast(inspect.stats) or {}
        queues = self._broadcast(inspect.active_queues) or {}
        return {
            name: {
                "pid": info.get("pid"),
                "uptime": info.get("uptime"),
                "concurrency": (info.get("pool") or {}).get("max-concurrency"),
                "processes": (info.get("pool") or {}).get("processes", []),
                "tasks_total": info.get("total", {}),
                "queues": [queue["name"] for queue in queues.get(name, [])],
            }
            for name, info in sorted(stats.items())
        }

    def tasks(self, *, timeout: float = 1.0) -> dict[str, Any]:
        """Per worker: the tasks it runs now (active), has taken but not started (reserved), and
        holds for a later time (scheduled: retries waiting out their countdown)."""
        inspect = self.app.control.inspect(timeout=timeout)
        return {
            "active": _task_summaries(self._broadcast(inspect.active)),
            "reserved": _task_summaries(self._broadcast(inspect.reserved)),
            "scheduled": {
                worker: [_summary(item.get("request", {}), eta=item.get("eta")) for item in items]
                for worker, items in (self._broadcast(inspect.scheduled) or {}).items()
            },
        }

    def _broadcast(self, call: Any) -> dict[str, Any] | None:
        try:
            return call()
        except _BROKER_ERRORS as exc:
            raise Unavailable(f"Celery broker unreachable: {exc!r}", backend="celery") from exc

    def ping(self) -> None:
        """Raises Unavailable unless the broker answers PING."""
        try:
            self._redis.ping()
        except redis.RedisError as exc:
            raise Unavailable(f"Celery broker unreachable: {exc!r}", backend="celery") from exc

    def close(self) -> None:
        self.app.close()
        self._redis.close()


def _task_summaries(
    replies: dict[str, list[dict[str, Any]]] | None,
) -> dict[str, list[dict[str, Any]]]:
    return {worker: [_summary(task) for task in tasks] for worker, tasks in (replies or {}).items()}


def _summary(task: dict[str, Any], *, eta: str | None = None) -> dict[str, Any]:
    """What an operator needs of a task request: which run, which queue, since when."""
    kwargs = task.get("kwargs") or {}
    body = kwargs.get("task") if isinstance(kwargs, dict) else None
    summary = {
        "task_id": task.get("id"),
        "name": task.get("name"),
        "eval_id": body.get("eval_id") if isinstance(body, dict) else None,
        "role": body.get("role") if isinstance(body, dict) else None,
        "queue": (task.get("delivery_info") or {}).get("routing_key"),
        "started_at": task.get("time_start"),
        "worker_pid": task.get("worker_pid"),
    }
    if eta is not None:
        summary["eta"] = eta
    return summary
