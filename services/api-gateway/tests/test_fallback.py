"""Fallback over real processes: a path that cannot take an evaluation hands it to the other one."""

from __future__ import annotations

import httpx

from crucible_runtime.pytest_plugin import wait_for

CODE = {"code": "print('hello')"}


def _metric(url: str, line_start: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_with_the_queue_service_down_a_legacy_evaluation_goes_to_celery(
    start_gateway, own_queue_service, redis_server, broker_redis, storage, internal
):
    gateway = start_gateway(
        broker=redis_server.url,
        queue=own_queue_service.url,
        celery_enabled=True,
        celery_percentage=0,
    )
    own_queue_service.stop()

    response = httpx.post(f"{gateway.url}/api/eval", json=CODE, timeout=30)

    assert response.status_code == 202, response.text
    answer = response.json()
    assert (answer["backend"], answer["fallback_from"]) == ("celery", "legacy")
    stored = httpx.get(f"{gateway.url}/api/eval/{answer['eval_id']}", timeout=10).json()
    assert (stored["status"], stored["backend"]) == ("queued", "celery")
    assert broker_redis.llen("default") == 1
    events = internal(storage.url).get(f"/evaluations/{answer['eval_id']}/events").json()
    assert any(event["detail"].get("fallback_from") == "legacy" for event in events), events
    fallbacks = 'crucible_gateway_fallbacks_total{from_backend="legacy",to_backend="celery"}'
    assert _metric(gateway.url, fallbacks) == 1.0


def test_with_the_broker_down_a_celery_evaluation_goes_to_legacy(
    start_gateway, redis_server, queue_service, internal
):
    gateway = start_gateway(broker=redis_server.url, celery_enabled=True, celery_percentage=1.0)
    redis_server.stop()

    response = httpx.post(f"{gateway.url}/api/eval", json=CODE, timeout=30)

    assert response.status_code == 202, response.text
    answer = response.json()
    assert (answer["backend"], answer["fallback_from"]) == ("legacy", "celery")
    stored = httpx.get(f"{gateway.url}/api/eval/{answer['eval_id']}", timeout=10).json()
    assert stored["backend"] == "legacy"
    task = internal(queue_service.url).get(f"/tasks/{answer['eval_id']}:primary")
    assert task.status_code == 200, task.text
    assert task.json()["state"] == "queued"


def test_once_the_broker_is_back_celery_evaluations_go_to_celery_again(
    start_gateway, redis_server, queue_service
):
    gateway = start_gateway(broker=redis_server.url, celery_enabled=True, celery_percentage=1.0)
    first = httpx.post(f"{gateway.url}/api/eval", json=CODE, timeout=30).json()
    assert first["backend"] == "celery"
    redis_server.stop()
    assert httpx.post(f"{gateway.url}/api/eval", json=CODE, timeout=30).json()["backend"] == (
        "legacy"
    )

    redis_server.start()

    def lands_on_celery() -> bool:
        answer = httpx.post(f"{gateway.url}/api/eval", json=CODE, timeout=30).json()
        return answer["backend"] == "celery" and answer["fallback_from"] is None

    wait_for(lands_on_celery, timeout=20, interval=0.2, what="submissions to reach Celery again")


def test_with_both_paths_down_the_client_gets_503_and_the_record_says_error(
    start_gateway, own_queue_service, redis_server, storage, internal
):
    gateway = start_gateway(
        broker=redis_server.url,
        queue=own_queue_service.url,
        celery_enabled=True,
        celery_percentage=0.5,
    )
    own_queue_service.stop()
    redis_server.stop()

    response = httpx.post(f"{gateway.url}/api/eval", json=CODE, timeout=30)

    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "no_path_available"
    eval_id = error["details"]["eval_id"]
    assert set(error["details"]["errors"]) == {"legacy", "celery"}
    stored = internal(storage.url).get(f"/evaluations/{eval_id}").json()
    assert stored["status"] == "error"
    assert "no path" in stored["reason"]


def test_with_celery_disabled_a_dead_queue_service_is_not_bypassed_to_celery(
    start_gateway, own_queue_service, redis_server, broker_redis
):
    gateway = start_gateway(
        broker=redis_server.url, queue=own_queue_service.url, celery_enabled=False
    )
    own_queue_service.stop()

    response = httpx.post(f"{gateway.url}/api/eval", json=CODE, timeout=30)

    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "no_path_available"
    assert broker_redis.llen("default") == 0


def test_a_batch_item_no_path_took_is_answered_with_status_error(
    start_gateway, own_queue_service, redis_server
):
    gateway = start_gateway(
        broker=redis_server.url, queue=own_queue_service.url, celery_enabled=False
    )
    own_queue_service.stop()

    response = httpx.post(
        f"{gateway.url}/api/eval-batch", json={"evaluations": [CODE, CODE]}, timeout=30
    )

    assert response.status_code == 202, response.text
    entries = response.json()["evaluations"]
    assert [entry["status"] for entry in entries] == ["error", "error"]
    for entry in entries:
        stored = httpx.get(f"{gateway.url}/api/eval/{entry['eval_id']}", timeout=10).json()
        assert stored["status"] == "error"


def test_with_storage_down_the_client_gets_503_and_nothing_is_dispatched(
    start_gateway, own_storage, own_queue_service, redis_server, broker_redis, internal
):
    gateway = start_gateway(
        broker=redis_server.url,
        queue=own_queue_service.url,
        storage_url=own_storage.url,
        celery_enabled=True,
        celery_percentage=0.5,
    )
    own_storage.stop()

    responses = [httpx.post(f"{gateway.url}/api/eval", json=CODE, timeout=30) for _ in range(4)]

    assert {response.status_code for response in responses} == {503}
    assert {response.json()["error"]["code"] for response in responses} == {"unavailable"}
    assert internal(own_queue_service.url).get("/status").json()["queued"] == 0
    assert broker_redis.llen("default") == 0


def test_a_shadow_its_path_refuses_stays_queued_and_the_reconciler_sends_it_once_back(
    start_gateway, own_queue_service, own_storage, redis_server, internal, processes
):
    # A storage of its own: the reconciler looks at the oldest queued runs first, and the shared
    # storage holds every other test's never-run legacy evaluations.
    storage = own_storage
    gateway = start_gateway(
        broker=redis_server.url,
        queue=own_queue_service.url,
        storage_url=own_storage.url,
        celery_enabled=True,
        celery_percentage=1.0,
        migration_mode="shadow",
        shadow_percentage=1.0,
        reconcile_interval_seconds=0.5,
        reconcile_queued_after_seconds=1,
    )
    own_queue_service.stop()

    response = httpx.post(f"{gateway.url}/api/eval", json=CODE, timeout=30)
    eval_id = response.json()["eval_id"]

    def shadow() -> dict:
        view = internal(storage.url).get(f"/evaluations/{eval_id}").json()
        return next(run for run in view["runs"] if run["role"] == "shadow")

    assert response.status_code == 202, response.text
    wait_for(
        lambda: (
            _metric(
                gateway.url, 'crucible_gateway_shadow_runs_total{backend="legacy",result="refused"}'
            )
            == 1.0
        ),
        what="the legacy path to refuse the shadow run",
    )
    assert shadow()["status"] == "queued"
    processes.restart(own_queue_service)
    queued = wait_for(
        lambda: internal(own_queue_service.url).get(f"/tasks/{eval_id}:shadow").status_code == 200,
        what="the reconciler to send the shadow run again",
    )
    assert queued
    assert (shadow()["status"], shadow()["attempts"]) == ("queued", 1)


def _shadow_run(internal, storage_url: str, eval_id: str) -> dict:
    view = internal(storage_url).get(f"/evaluations/{eval_id}").json()
    return next(run for run in view["runs"] if run["role"] == "shadow")


def test_a_shadowed_submission_records_both_runs_in_one_storage_call(
    start_gateway, own_storage, queue_service, redis_server, internal
):
    gateway = start_gateway(
        broker=redis_server.url,
        storage_url=own_storage.url,
        celery_enabled=True,
        celery_percentage=1.0,
        migration_mode="shadow",
        shadow_percentage=1.0,
    )
    creates = 'crucible_http_requests_total{code="201",method="POST",route="/evaluations"'
    added = (
        'crucible_http_requests_total{code="201",method="POST",route="/evaluations/{eval_id}/runs"'
    )

    answer = httpx.post(f"{gateway.url}/api/eval", json=CODE, timeout=30).json()

    assert answer["shadow_backend"] == "legacy"
    task = wait_for(
        lambda: internal(queue_service.url).get(f"/tasks/{answer['eval_id']}:shadow").json(),
        what="the shadow run to reach the legacy queue",
    )
    assert task["state"] == "queued"
    assert _shadow_run(internal, own_storage.url, answer["eval_id"])["backend"] == "legacy"
    assert (_metric(own_storage.url, creates), _metric(own_storage.url, added)) == (1.0, 0.0)


def test_a_primary_that_falls_back_takes_its_shadow_to_the_path_it_left(
    start_gateway, own_queue_service, redis_server, storage, internal
):
    gateway = start_gateway(
        broker=redis_server.url,
        queue=own_queue_service.url,
        celery_enabled=True,
        celery_percentage=0,
        migration_mode="shadow",
        shadow_percentage=1.0,
    )
    own_queue_service.stop()

    answer = httpx.post(f"{gateway.url}/api/eval", json=CODE, timeout=30).json()

    assert (answer["backend"], answer["fallback_from"]) == ("celery", "legacy")
    assert answer["shadow_backend"] == "legacy"
    shadow = _shadow_run(internal, storage.url, answer["eval_id"])
    # Its path is down: it waits, queued, for the reconciler.
    assert (shadow["backend"], shadow["status"]) == ("legacy", "queued")
    events = internal(storage.url).get(f"/evaluations/{answer['eval_id']}/events").json()
    moved = [e for e in events if e["role"] == "shadow" and e["detail"].get("primary_fell_back")]
    assert len(moved) == 1, events


def test_with_both_paths_down_a_shadowed_evaluation_ends_error_on_both_runs(
    start_gateway, own_queue_service, redis_server, storage, internal
):
    gateway = start_gateway(
        broker=redis_server.url,
        queue=own_queue_service.url,
        celery_enabled=True,
        celery_percentage=1.0,
        migration_mode="shadow",
        shadow_percentage=1.0,
    )
    own_queue_service.stop()
    redis_server.stop()

    response = httpx.post(f"{gateway.url}/api/eval", json=CODE, timeout=30)

    assert response.status_code == 503, response.text
    eval_id = response.json()["error"]["details"]["eval_id"]
    view = internal(storage.url).get(f"/evaluations/{eval_id}").json()
    assert {run["role"]: run["status"] for run in view["runs"]} == {
        "primary": "error",
        "shadow": "error",
    }
