"""Prometheus view of the legacy queue: tasks by state and counters, read from the TaskQueue at
scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from crucible_queue.taskqueue import TaskQueue


class QueueCollector(Collector):
    """Reads the queue it is pointed at; one per process, re-pointed by each `create_app`."""

    def __init__(self) -> None:
        self.queue: TaskQueue | None = None

    def collect(self) -> Iterator[Metric]:
        if self.queue is None:
            return
        status = self.queue.status()
        depth = GaugeMetricFamily(
            "crucible_legacy_queue_depth", "Tasks in the legacy queue by state", labels=["state"]
        )
        depth.add_metric(["queued"], status.queued)
        depth.add_metric(["processing"], status.processing)
        # The oldest task's age is the gateway's `crucible_queue_oldest_age_seconds{queue="legacy"}`
        # (one name for every queue's age); `/status` gives it to the gateway.
        yield depth
        tasks = CounterMetricFamily(
            "crucible_legacy_queue_tasks", "Legacy queue task transitions", labels=["event"]
        )
        for event, value in (
            ("enqueued", status.enqueued_total),
            ("completed", status.completed),
            ("failed", status.failed),
            ("cancelled", status.cancelled),
            ("requeued", status.requeued_total),
            ("lease_expired", status.lease_expired_total),
        ):
            tasks.add_metric([event], value)
        yield tasks


_COLLECTOR: QueueCollector | None = None


def expose(queue: TaskQueue) -> None:
    """Make `/metrics` of this process describe `queue`."""
    global _COLLECTOR
    if _COLLECTOR is None:
        _COLLECTOR = QueueCollector()
        REGISTRY.register(_COLLECTOR)
    _COLLECTOR.queue = queue
