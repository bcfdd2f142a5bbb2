"""Housekeeping over the whole suite: evaluations the legacy queue lost in a restart are found by
beat's reconciler, enqueued again and run to their end."""

from __future__ import annotations

import uuid

import pytest
from celery import Celery

from crucible_contracts.names import EventName
from crucible_runtime.clients import StorageClient
from crucible_runtime.pytest_plugin import wait_for

pytestmark = pytest.mark.e2e

# The reconciler looks every second at runs queued for more than one second.
FAST_RECONCILER = {"RECONCILE_INTERVAL_SECONDS": "1", "RECONCILE_QUEUED_AFTER_SECONDS": "1"}


def _start_reconciling(suite, schedule_file: str) -> None:
    """A Celery worker and a beat with the fast reconciler, in place of the suite's worker."""
    env = {**suite.env, **FAST_RECONCILER}
    nodename = f"housekeeping-{uuid.uuid4().hex[:8]}@localhost"
    pinger = Celery(broker=env["CELERY_BROKER_URL"])
    try:
        suite.starter.process(
            "celery-worker-housekeeping",
            suite.celery_command("worker", "-P", "prefork", "-c", "2", "-Q", "low", "-n", nodename),
            env=env,
            ready=lambda _: pinger.control.ping(destination=[nodename], timeout=0.5),
            ready_timeout=60,
        )
    finally:
        pinger.close()
    suite.starter.process(
        "beat",
        suite.celery_command("beat", "--schedule", schedule_file, "--loglevel", "INFO"),
        env=env,
        ready=lambda beat: "beat: Starting" in beat.logs(),
    )


def test_evaluations_lost_by_a_legacy_queue_restart_are_enqueued_again_and_complete(
    own_suite, client_for, tmp_path
):
    client = client_for(own_suite.gateway(CELERY_ENABLED="true", CELERY_PERCENTAGE="0"))
    own_suite.queue_worker.stop()
    accepted = [client.submit(f"print({n} * 3)") for n in range(6)]
    assert {item["backend"] for item in accepted} == {"legacy"}

    own_suite.starter.restart(own_suite.queue_service)  # its deque, and every task in it, is gone
    own_suite.celery_worker.stop()
    _start_reconciling(own_suite, str(tmp_path / "celerybeat-schedule"))
    storage = StorageClient(own_suite.storage.url)

    def redispatched(eval_id: str) -> bool:
        return any(
            event.event is EventName.RETRIED and event.detail.get("failure") == "lost_by_queue"
            for event in storage.events(eval_id)
        )

    try:
        wait_for(
            lambda: all(redispatched(item["eval_id"]) for item in accepted),
            timeout=60,
            what="the reconciler to enqueue every lost evaluation again",
        )
        own_suite.starter.restart(own_suite.queue_worker)
        views = [client.wait_done(item["eval_id"], timeout=120) for item in accepted]
    finally:
        storage.close()

    for n, view in enumerate(views):
        assert (view["status"], view["output"], view["backend"]) == (
            "completed",
            f"{n * 3}\n",
            "legacy",
        ), view
        assert view["attempts"] == 1
