"""Operating the Celery and legacy paths over the whole suite: cancellation on both paths, the
dead-letter queue's admin API with replay, and the Celery workers/tasks views."""

from __future__ import annotations

import httpx
import pytest

from crucible_runtime.pytest_plugin import start_redis_server, wait_for

pytestmark = pytest.mark.e2e

TOKEN = "ops-token-for-the-operations-tests"
OPERATOR = {"Authorization": f"Bearer {TOKEN}"}
SLEEPER = "import time\nprint('started', flush=True)\ntime.sleep(60)"


def _status(client, eval_id: str) -> str:
    return client.get(eval_id)["status"]


def _wait_status(client, eval_id: str, status: str, timeout: float = 60) -> dict:
    return wait_for(
        lambda: (view := client.get(eval_id))["status"] == status and view,
        timeout=timeout,
        interval=0.05,
        what=f"{eval_id} to be {status}",
    )


@pytest.mark.parametrize("path", ["legacy", "celery"])
def test_a_queued_evaluation_is_cancelled_and_never_runs(suite, client_for, path):
    # Nobody drains this broker or this queue-service until the test says so.
    broker = start_redis_server(suite.starter)
    idle_queue = suite.starter.service(
        "crucible_queue.main:create_app", name="idle-queue-service", env=suite.env
    )
    gateway = suite.gateway(
        CELERY_ENABLED="true",
        CELERY_PERCENTAGE="1.0" if path == "celery" else "0",
        CELERY_BROKER_URL=broker.url,
        QUEUE_SERVICE_URL=idle_queue.url,
    )
    client = client_for(gateway)
    eval_id = client.submit("print('must not run')")["eval_id"]

    response = client.http.post(f"/api/eval/{eval_id}/cancel")

    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["reason"]) == (
        "cancelled",
        "cancelled by request",
    )
    if path == "legacy":
        task = httpx.get(f"{idle_queue.url}/tasks/{eval_id}:primary", timeout=10).json()
        assert task["state"] == "cancelled"
        assert httpx.get(f"{idle_queue.url}/status", timeout=10).json()["queued"] == 0
    else:
        # A worker that starts now still receives the message, and skips it: storage says cancelled.
        suite.extra_celery_worker("late-worker", CELERY_BROKER_URL=broker.url)
        wait_for(
            lambda: client.http.get("/api/queue-status").json()["celery"]["total"] == 0,
            timeout=60,
            what="the late worker to take the cancelled task",
        )
        assert client.http.get("/api/celery/workers").json()["count"] == 1
    view = client.get(eval_id)
    assert (view["status"], view["output"], view["started_at"]) == ("cancelled", None, None)
    assert client.http.post(f"/api/eval/{eval_id}/cancel").status_code == 409


@pytest.mark.parametrize("path", ["legacy", "celery"])
def test_a_running_evaluation_is_killed_only_with_terminate_and_stays_cancelled(
    suite, client_for, path
):
    gateway = suite.gateway(
        CELERY_ENABLED="true", CELERY_PERCENTAGE="1.0" if path == "celery" else "0"
    )
    client = client_for(gateway)
    eval_id = client.submit(SLEEPER, timeout=120)["eval_id"]
    _wait_status(client, eval_id, "running")
    if path == "celery":
        active = client.http.get("/api/celery/tasks").json()["active"]
        assert eval_id in {task["eval_id"] for tasks in active.values() for task in tasks}

    refused = client.http.post(f"/api/eval/{eval_id}/cancel")
    assert refused.status_code == 409
    assert "terminate=true" in refused.json()["error"]["message"]
    assert _status(client, eval_id) == "running"

    response = client.http.post(f"/api/eval/{eval_id}/cancel", params={"terminate": "true"})

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    # The consumer gets the killed program's result back and must not overwrite the cancel.
    if path == "legacy":
        wait_for(
            lambda: (
                httpx.get(f"{suite.queue_service.url}/tasks/{eval_id}:primary", timeout=10).json()[
                    "state"
                ]
                != "processing"
            ),
            timeout=30,
            what="the queue-worker to finish with the killed run",
        )
    else:
        wait_for(
            lambda: (
                eval_id
                not in {
                    task["eval_id"]
                    for tasks in client.http.get("/api/celery/tasks").json()["active"].values()
                    for task in tasks
                }
            ),
            timeout=30,
            what="the Celery task to finish with the killed run",
        )
    view = client.get(eval_id)
    assert view["status"] == "cancelled"
    assert view["exit_code"] is None


def test_a_finished_evaluation_cannot_be_cancelled(suite, client_for):
    client = client_for(suite.gateway())
    eval_id = client.submit("print(1)")["eval_id"]
    client.wait_done(eval_id)

    response = client.http.post(f"/api/eval/{eval_id}/cancel", params={"terminate": "true"})

    assert response.status_code == 409
    assert response.json()["error"]["details"]["status"] == "completed"


def test_dead_letters_are_listed_inspected_replayed_and_purged(suite, client_for):
    path = suite.dead_letter_path(f"ops:{TOKEN}")
    gateway = path.gateway
    client = client_for(gateway)
    admin = httpx.Client(base_url=gateway.url, headers=OPERATOR, timeout=30)
    first, second = (client.submit(f"print('replayed {n}')")["eval_id"] for n in (1, 2))
    for eval_id in (first, second):
        assert client.wait_done(eval_id)["status"] == "error"

    assert client.http.get("/api/admin/dlq").status_code == 401
    page = wait_for(
        lambda: (body := admin.get("/api/admin/dlq").json())["total"] == 2 and body,
        timeout=30,
        what="two dead letters",
    )
    assert client.http.get("/api/queue-status").json()["dead_letter"]["entries"] == 2
    entry = next(item for item in page["items"] if item["eval_id"] == first)
    detail = admin.get(f"/api/admin/dlq/{entry['id']}").json()
    assert detail["attempts"] == 2 and detail["traceback"]
    assert detail["kwargs"]["task"]["program"]["code"] == "print('replayed 1')"

    # The cause is fixed (a worker that reaches the executors), then the entry is replayed.
    path.mend()
    replayed = admin.post(f"/api/admin/dlq/{entry['id']}/replay")

    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["run"]["replays"] == 1
    view = client.wait_done(first)
    assert (view["status"], view["output"]) == ("completed", "replayed 1\n")
    assert admin.get(f"/api/admin/dlq/{entry['id']}").status_code == 404
    assert admin.post(f"/api/admin/dlq/{entry['id']}/replay").status_code == 404

    assert admin.delete("/api/admin/dlq").json() == {"purged": 1}
    assert admin.get("/api/admin/dlq").json()["total"] == 0
    assert client.get(second)["status"] == "error"
    admin.close()
