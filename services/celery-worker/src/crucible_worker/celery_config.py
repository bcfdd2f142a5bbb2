"""The Celery configuration of Crucible's worker, as one plain dict built from Settings."""

from __future__ import annotations

from typing import Any

from kombu import Exchange
from kombu import Queue as KombuQueue

from crucible_contracts.names import QUEUE_ORDER, Queue
from crucible_worker.config import Settings


def celery_config(settings: Settings) -> dict[str, Any]:
    """Every Celery setting the worker and Flower share; safe Redis-broker defaults.

    No beat schedule: housekeeping (the purge, the reconciler) is the gateway leader's.
    """
    _, hard_limit = settings.default_time_limits()
    return {
        "broker_url": settings.celery_broker_url,
        "result_backend": settings.celery_result_backend,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            # Drain high before default before low before shadow.
            "queue_order_strategy": "priority",
            "visibility_timeout": settings.visibility_timeout(),
        },
        "result_backend_transport_options": {"visibility_timeout": settings.visibility_timeout()},
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # In QUEUE_ORDER, which is the order a worker without -Q drains them.
        "task_queues": tuple(_queue(queue.value) for queue in QUEUE_ORDER),
        "task_default_queue": Queue.DEFAULT.value,
        "task_default_routing_key": Queue.DEFAULT.value,
        # A task is acknowledged once it has ended, and put back when its worker process dies,
        # so a crash never loses an evaluation; storage's state machine absorbs the duplicates.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # ...and rather than put back as is, sent again as a retry, so losses can be counted.
        "task_retry_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # Take a message only when a pool process is free: a worker that dies then holds only the
        # runs it had started (`running` in storage, recovered by the leader's reconciler once
        # their lease runs out), never queued ones that would wait out the visibility timeout.
        # It also lets a high-priority message overtake the default queue's next one.
        "worker_disable_prefetch": True,
        # On broker loss let running evaluations finish: their result goes to storage, and the
        # redelivered copy is skipped because the run has ended.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_concurrency": settings.celery_concurrency,
        # No STARTED state in the result backend: storage records `running`, and nothing
        # reads Celery's copy of it (a result backend write per task saved).
        "task_track_started": False,
        # Only a hard default: a task sent without limits (the gateway always sends both) is
        # still bounded, and a hard kill is recorded (tasks.end_after_hard_time_limit).
        "task_time_limit": hard_limit,
        "result_expires": settings.result_expires_seconds,
        "worker_send_task_events": settings.celery_task_events,
        "task_send_sent_event": settings.celery_task_events,
    }


def _queue(name: str) -> KombuQueue:
    # The same declaration a client's send_task(queue=name) makes for a queue it does not know.
    return KombuQueue(name, Exchange(name, type="direct"), routing_key=name)
