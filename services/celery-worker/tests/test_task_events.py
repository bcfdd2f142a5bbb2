"""CELERY_TASK_EVENTS: a worker sends Celery's task events (what Flower's task views are made of)
only when it is on; Flower is then told not to switch them on behind the setting's back."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from celery import Celery

from crucible_runtime.pytest_plugin import wait_for
from crucible_worker.flower import flower_args

MARKER = "crucible-test-marker"


class EventLog:
    """Every event on a broker's event channel, in the order Redis delivered them."""

    def __init__(self) -> None:
        self.types: list[str] = []

    def before_marker(self, marker_id: str) -> list[str] | None:
        """The event types seen before the marker `marker_id`; None while it has not arrived."""
        key = f"{MARKER}:{marker_id}"
        return self.types[: self.types.index(key)] if key in self.types else None


def send_marker(client: Celery) -> str:
    """Publish a marker event on the event channel; returns its id."""
    marker_id = uuid.uuid4().hex
    with client.events.default_dispatcher() as dispatcher:
        dispatcher.send(MARKER, marker=marker_id)
    return marker_id


@contextmanager
def listening(client: Celery) -> Iterator[EventLog]:
    """An EventLog filled by a real event receiver on the broker, listening once this yields."""
    log = EventLog()

    def record(event: dict) -> None:
        kind = event["type"]
        log.types.append(f"{kind}:{event['marker']}" if kind == MARKER else kind)

    with client.connection_for_read() as connection:
        receiver = client.events.Receiver(connection, handlers={"*": record})
        thread = threading.Thread(target=receiver.capture, kwargs={"wakeup": False}, daemon=True)
        thread.start()
        try:
            # Subscribed once a marker sent now comes back.
            wait_for(
                lambda: log.before_marker(send_marker(client)) is not None,
                timeout=10,
                what="the event receiver to listen",
            )
            log.types.clear()
            yield log
        finally:
            receiver.should_stop = True
            thread.join(5)


def events_of_one_evaluation(worker, storage, submit, wait_until_ended) -> list[str]:
    """The event types a worker sent for one evaluation up to its end in storage.

    `task-received` and `task-started` go out before the task writes its result to storage, so
    a marker published after storage shows the end comes after them on the channel if they
    were sent at all.
    """
    with listening(worker.client) as log:
        eval_id, _ = submit(worker.client, storage, "print('observed')")
        wait_until_ended(storage, eval_id)
        marker_id = send_marker(worker.client)
        wait_for(lambda: log.before_marker(marker_id) is not None, timeout=10, what="the marker")
        return log.before_marker(marker_id) or []


def test_a_worker_sends_task_events_by_default(stack, storage, submit, wait_until_ended):
    seen = events_of_one_evaluation(stack.worker, storage, submit, wait_until_ended)

    assert {"task-received", "task-started"} <= set(seen)


def test_a_worker_without_task_events_sends_none(
    stack, storage, start_worker, submit, wait_until_ended
):
    worker = start_worker(
        storage_url=stack.storage_url,
        executor_urls=stack.executor_urls,
        CELERY_TASK_EVENTS="false",
    )

    seen = events_of_one_evaluation(worker, storage, submit, wait_until_ended)

    assert not [kind for kind in seen if kind.startswith("task-")]


def test_flower_leaves_task_events_off_when_the_setting_says_so():
    assert "--enable_events=False" in flower_args([], task_events=False)
    assert not any(arg.startswith("--enable_events") for arg in flower_args([], task_events=True))
