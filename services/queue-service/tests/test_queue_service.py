"""The queue-service over HTTP: FIFO, idempotent enqueue, acks, cancellation, leases, status, auth."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

import httpx

from crucible_contracts.ids import new_eval_id
from crucible_contracts.names import INTERNAL_KEY_HEADER, Role
from crucible_runtime.pytest_plugin import wait_for


def _post(client: httpx.Client, task) -> httpx.Response:
    return _post_json(client, task.model_dump(mode="json"))


def _post_json(client: httpx.Client, body: dict) -> httpx.Response:
    return client.post("/tasks", json=body)


def test_tasks_are_delivered_in_fifo_order(queue_http, make_task):
    tasks = [make_task(f"print({n})") for n in range(4)]
    positions = [_post(queue_http, task).json()["position"] for task in tasks]
    assert positions == [0, 1, 2, 3]

    delivered = [queue_http.get("/tasks/next").json() for _ in tasks]

    assert [d["task"]["eval_id"] for d in delivered] == [t.eval_id for t in tasks]
    assert [d["task"]["program"]["code"] for d in delivered] == [t.program.code for t in tasks]
    assert all(d["attempts"] == 1 for d in delivered)
    assert queue_http.get("/tasks/next").status_code == 204


def test_delivered_task_is_the_contract_eval_task(queue_http, make_task):
    task = make_task("import sys; print(sys.stdin.read())", stdin="abc", memory_mb=64)
    created = _post(queue_http, task)
    assert created.status_code == 201
    assert created.json() == {"task_id": f"{task.eval_id}:primary", "position": 0, "queued": 1}

    delivery = queue_http.get("/tasks/next").json()

    assert delivery["task_id"] == f"{task.eval_id}:primary"
    assert delivery["task"] == task.model_dump(mode="json")


def test_a_flat_task_of_an_older_gateway_is_taken_and_delivered_nested(queue_http, make_task):
    task = make_task(stdin="abc", memory_mb=64)
    fields = task.model_dump(mode="json")
    flat = {**fields.pop("program"), **fields}

    assert _post_json(queue_http, flat).status_code == 201
    assert queue_http.get("/tasks/next").json()["task"] == task.model_dump(mode="json")


def test_status_counts_every_state(queue_http, make_task):
    before = queue_http.get("/status").json()
    tasks = [make_task() for _ in range(4)]
    for task in tasks:
        _post(queue_http, task)
    first, second = (queue_http.get("/tasks/next").json()["task_id"] for _ in range(2))
    assert queue_http.post(f"/tasks/{first}/complete").status_code == 200
    assert queue_http.post(f"/tasks/{second}/fail", json={"reason": "boom"}).status_code == 200
    queue_http.get("/tasks/next")

    status = queue_http.get("/status").json()

    assert status["queued"] == 1
    assert status["processing"] == 1
    assert status["completed"] == before["completed"] + 1
    assert status["failed"] == before["failed"] + 1
    assert status["enqueued_total"] == before["enqueued_total"] + 4
    assert status["oldest_queued_age_s"] >= 0
    assert queue_http.get(f"/tasks/{second}").json()["reason"] == "boom"


def test_empty_queue_reports_no_oldest_age(queue_http):
    status = queue_http.get("/status").json()
    assert status["queued"] == 0
    assert status["oldest_queued_age_s"] is None


def test_enqueue_of_a_run_already_queued_or_processing_is_refused(queue_http, make_task):
    enqueued = queue_http.get("/status").json()["enqueued_total"]
    task = make_task()
    assert _post(queue_http, task).status_code == 201

    again = _post(queue_http, task)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"

    task_id = queue_http.get("/tasks/next").json()["task_id"]
    assert _post(queue_http, task).status_code == 409
    assert queue_http.get("/status").json()["enqueued_total"] == enqueued + 1

    shadow = task.model_copy(update={"role": Role.SHADOW})
    assert _post(queue_http, shadow).status_code == 201

    queue_http.post(f"/tasks/{task_id}/complete")
    assert _post(queue_http, task).status_code == 201


def test_delete_removes_a_queued_task(queue_http, make_task):
    cancelled = queue_http.get("/status").json()["cancelled"]
    kept, dropped = make_task(), make_task()
    _post(queue_http, kept)
    _post(queue_http, dropped)
    dropped_id = f"{dropped.eval_id}:primary"

    response = queue_http.delete(f"/tasks/{dropped_id}")

    assert response.status_code == 200
    assert response.json()["state"] == "cancelled"
    assert queue_http.get(f"/tasks/{dropped_id}").json()["state"] == "cancelled"
    assert queue_http.get("/tasks/next").json()["task"]["eval_id"] == kept.eval_id
    assert queue_http.get("/tasks/next").status_code == 204
    assert queue_http.get("/status").json()["cancelled"] == cancelled + 1


def test_delete_of_a_processing_task_is_refused_and_unknown_is_404(queue_http, make_task):
    task = make_task()
    _post(queue_http, task)
    task_id = queue_http.get("/tasks/next").json()["task_id"]

    assert queue_http.delete(f"/tasks/{task_id}").status_code == 409
    assert queue_http.delete(f"/tasks/{make_task().eval_id}:primary").status_code == 404
    queue_http.post(f"/tasks/{task_id}/complete")
    assert queue_http.delete(f"/tasks/{task_id}").status_code == 404


def test_get_task_shows_its_position_and_404_when_unknown(queue_http, make_task):
    tasks = [make_task() for _ in range(3)]
    for task in tasks:
        _post(queue_http, task)

    view = queue_http.get(f"/tasks/{tasks[2].eval_id}:primary").json()

    assert view["state"] == "queued"
    assert view["position"] == 2
    missing = queue_http.get(f"/tasks/{make_task().eval_id}:primary")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


def test_requeue_puts_the_task_at_the_back_without_counting_an_attempt(queue_http, make_task):
    first, second = make_task(), make_task()
    _post(queue_http, first)
    _post(queue_http, second)
    task_id = queue_http.get("/tasks/next").json()["task_id"]

    response = queue_http.post(f"/tasks/{task_id}/requeue", json={"reason": "shutdown"})

    assert response.status_code == 200
    assert response.json()["position"] == 1
    assert queue_http.get("/tasks/next").json()["task"]["eval_id"] == second.eval_id
    again = queue_http.get("/tasks/next").json()
    assert again["task"]["eval_id"] == first.eval_id
    assert again["attempts"] == 1


def test_task_whose_lease_expires_returns_to_the_queue_with_its_attempt_counted(
    start_queue, make_task, internal_key
):
    queue = start_queue(queue_lease_seconds=0.3)
    client = httpx.Client(base_url=queue.url, headers={INTERNAL_KEY_HEADER: internal_key})
    task = make_task()
    _post(client, task)
    task_id = client.get("/tasks/next").json()["task_id"]
    assert client.get(f"/tasks/{task_id}").json()["state"] == "processing"

    wait_for(
        lambda: client.get(f"/tasks/{task_id}").json()["state"] == "queued",
        timeout=5,
        what="the lease to expire",
    )

    redelivered = client.get("/tasks/next").json()
    assert redelivered["task_id"] == task_id
    assert redelivered["attempts"] == 2
    assert client.get("/status").json()["lease_expired_total"] == 1
    # The first worker's late ack still counts, and the second one's is then a no-op.
    assert client.post(f"/tasks/{task_id}/complete").status_code == 200
    assert client.post(f"/tasks/{task_id}/complete").status_code == 200
    assert client.post(f"/tasks/{task_id}/fail", json={"reason": "x"}).status_code == 409
    client.close()


def test_ack_of_an_unknown_task_is_404(queue_http):
    unknown = f"{'f' * 32}:primary"
    assert queue_http.post(f"/tasks/{unknown}/complete").status_code == 404
    assert queue_http.post(f"/tasks/{unknown}/fail", json={"reason": "x"}).status_code == 404
    assert queue_http.post(f"/tasks/{unknown}/requeue").status_code == 404


def test_invalid_task_is_refused_with_422_naming_the_field(queue_http):
    response = queue_http.post("/tasks", json={"eval_id": new_eval_id(), "backend": "legacy"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_input"
    assert "program" in response.json()["error"]["message"]
    fail = queue_http.post(f"/tasks/{'f' * 32}:primary/fail", json={})
    assert fail.status_code == 422


def test_full_queue_answers_busy_with_retry_after(start_queue, make_task, internal_key):
    queue = start_queue(queue_max_depth=1)
    headers = {INTERNAL_KEY_HEADER: internal_key}
    with httpx.Client(base_url=queue.url, headers=headers) as client:
        assert _post(client, make_task()).status_code == 201
        full = _post(client, make_task())
    assert full.status_code == 429
    assert full.headers["Retry-After"]


def test_calls_without_the_internal_key_are_refused(queue_http, make_task, internal_key):
    url = str(queue_http.base_url).rstrip("/")
    body = make_task().model_dump(mode="json")

    assert httpx.post(f"{url}/tasks", json=body).status_code == 401
    assert httpx.get(f"{url}/status").status_code == 401
    wrong = httpx.get(f"{url}/tasks/next", headers={INTERNAL_KEY_HEADER: "nope"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "unauthorized"
    assert httpx.get(f"{url}/health").status_code == 200
    assert httpx.get(f"{url}/metrics").status_code == 200
    good = httpx.post(f"{url}/tasks", json=body, headers={INTERNAL_KEY_HEADER: internal_key})
    assert good.status_code == 201


def test_metrics_expose_the_queue_depth(queue_http, make_task):
    enqueued = queue_http.get("/status").json()["enqueued_total"]
    for _ in range(3):
        _post(queue_http, make_task())
    queue_http.get("/tasks/next")

    text = queue_http.get("/metrics").text

    assert 'crucible_legacy_queue_depth{state="queued"} 2.0' in text
    assert 'crucible_legacy_queue_depth{state="processing"} 1.0' in text
    assert f'crucible_legacy_queue_tasks_total{{event="enqueued"}} {enqueued + 3:.1f}' in text


def test_container_health_probe_follows_the_service(queue_service):
    probe = [sys.executable, "-m", "crucible_queue.healthcheck"]
    env = {**os.environ, "QUEUE_SERVICE_PORT": str(queue_service.port)}
    assert subprocess.run(probe, env=env, capture_output=True, timeout=20).returncode == 0

    queue_service.stop()

    assert subprocess.run(probe, env=env, capture_output=True, timeout=20).returncode == 1


def test_a_long_poll_over_http_gets_the_task_queued_while_it_waits(queue_http, make_task):
    answers: list[httpx.Response] = []
    poll = threading.Thread(
        target=lambda: answers.append(queue_http.get("/tasks/next", params={"wait": 30})),
        daemon=True,
    )
    poll.start()
    wait_for(
        lambda: queue_http.get("/status").json()["waiting_consumers"] == 1,
        timeout=10,
        what="the long poll to wait",
    )

    task = make_task()
    assert _post(queue_http, task).status_code == 201
    poll.join(timeout=20)

    assert answers and answers[0].status_code == 200
    assert answers[0].json()["task"] == task.model_dump(mode="json")


def test_a_long_poll_longer_than_the_limit_is_refused(queue_http):
    answer = queue_http.get("/tasks/next", params={"wait": 31})
    assert answer.status_code == 422
    assert answer.json()["error"]["details"]["field"] == "query.wait"


def test_a_long_poll_whose_caller_went_away_leaves_the_task_queued(
    module_queue_service, queue_http, make_task
):
    host, port = module_queue_service.url.removeprefix("http://").split(":")
    caller = socket.create_connection((host, int(port)))
    caller.sendall(
        f"GET /tasks/next?wait=30 HTTP/1.1\r\nHost: {host}\r\n"
        f"{INTERNAL_KEY_HEADER}: {queue_http.headers[INTERNAL_KEY_HEADER]}\r\n\r\n".encode()
    )
    wait_for(
        lambda: queue_http.get("/status").json()["waiting_consumers"] == 1,
        timeout=10,
        what="the long poll to wait",
    )
    caller.close()  # as a worker killed mid-poll: its connection closes, nobody reads
    task = make_task()
    assert _post(queue_http, task).status_code == 201

    def given_back() -> bool:
        status = queue_http.get("/status").json()
        return status["waiting_consumers"] == 0 and status["queued"] == 1

    wait_for(given_back, timeout=10, what="the poll to end and the task to be queued")
    assert queue_http.get("/status").json()["processing"] == 0
    assert queue_http.get("/tasks/next").json()["task"] == task.model_dump(mode="json")
