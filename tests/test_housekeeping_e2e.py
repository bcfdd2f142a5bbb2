"""Housekeeping over the whole suite, done by the gateway leader: evaluations the legacy queue lost
in a restart are enqueued again and run to their end; a Celery run whose message was lost is sent
again, and once lost past the cap ends `error` with a dead letter that an operator replays on
Celery; old evaluations are purged."""

from __future__ import annotations

import httpx
import pytest
import redis

from crucible_contracts.names import EventName
from crucible_runtime.clients import StorageClient
from crucible_runtime.pytest_plugin import wait_for

pytestmark = pytest.mark.e2e

TOKEN = "ops-token-for-the-housekeeping-tests"
# The leader's reconciler looks twice a second at runs queued for more than one second.
FAST_RECONCILER = {
    "RECONCILE_INTERVAL_SECONDS": "0.5",
    "RECONCILE_QUEUED_AFTER_SECONDS": "1",
    "RECONCILE_CELERY_QUEUED_AFTER_SECONDS": "1",
}


def test_evaluations_lost_by_a_legacy_queue_restart_are_enqueued_again_and_complete(
    own_suite, client_for
):
    gateway = own_suite.gateway(CELERY_ENABLED="true", CELERY_PERCENTAGE="0", **FAST_RECONCILER)
    client = client_for(gateway)
    own_suite.queue_worker.stop()
    accepted = [client.submit(f"print({n} * 3)") for n in range(6)]
    assert {item["backend"] for item in accepted} == {"legacy"}

    own_suite.starter.restart(own_suite.queue_service)  # its deque, and every task in it, is gone
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
            what="the leader's reconciler to enqueue every lost evaluation again",
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
    metrics = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    assert 'crucible_housekeeping_runs_total{action="redispatched"} 6.0' in metrics


def test_a_lost_celery_run_is_sent_again_then_ends_error_is_replayed_and_old_ones_purged(
    own_suite, client_for
):
    celery_only = {"CELERY_ENABLED": "true", "CELERY_PERCENTAGE": "1.0"}
    reconciling = own_suite.gateway(
        **celery_only, **FAST_RECONCILER, RECONCILE_MAX_REDISPATCHES="1"
    )
    client = client_for(reconciling)
    own_suite.celery_worker.stop()
    eval_id = client.submit("print('lost, then replayed')")["eval_id"]
    broker = redis.Redis.from_url(own_suite.broker.url)
    storage = StorageClient(own_suite.storage.url)
    try:
        # The broker loses the message (say, its data), while storage has the run queued: the
        # leader sends it again once; lost a second time, it is given up.
        for _ in range(2):
            wait_for(lambda: broker.delete("default"), timeout=10, what="the message to be lost")
        resent = [
            event.detail["failure"]
            for event in storage.events(eval_id)
            if event.event is EventName.RETRIED
        ]
    finally:
        broker.close()
        storage.close()

    ended = client.wait_done(eval_id, timeout=30)
    # The operator replays through a gateway with the usual deadlines: this test's one-second
    # deadline would take a replay a worker has fetched but not yet started for lost as well.
    reconciling.stop()
    operator = own_suite.gateway(**celery_only, OPERATOR_TOKEN=f"ops:{TOKEN}")
    client = client_for(operator)
    admin = httpx.Client(
        base_url=operator.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    )
    page = admin.get("/api/admin/dlq").json()
    (entry,) = [item for item in page["items"] if item["eval_id"] == eval_id]
    own_suite.extra_celery_worker("celery-worker-back", concurrency=2)
    replayed = admin.post(f"/api/admin/dlq/{entry['id']}/replay")
    done = client.wait_done(eval_id, timeout=60)
    admin.close()

    assert resent == ["lost_by_queue"]
    assert (ended["status"], ended["backend"]) == ("error", "celery")
    assert "after it was enqueued again 1 times (limit 1)" in ended["reason"]
    assert (entry["backend"], entry["reason"]) == ("celery", ended["reason"])
    assert replayed.status_code == 200, replayed.text
    assert (done["status"], done["output"], done["backend"]) == (
        "completed",
        "lost, then replayed\n",
        "celery",
    )

    # A deployment that keeps evaluations two seconds and purges twice a second.
    operator.stop()
    purging = own_suite.gateway(RETENTION_DAYS=str(2 / 86_400), PURGE_INTERVAL_SECONDS="0.5")
    client = client_for(purging)
    wait_for(
        lambda: client.http.get(f"/api/eval/{eval_id}").status_code == 404,
        timeout=30,
        what="the purge to delete the evaluation",
    )
