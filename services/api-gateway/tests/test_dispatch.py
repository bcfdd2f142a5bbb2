"""Routing over real processes: where evaluations are recorded and which queue they land in."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from crucible_gateway.paths.routing import bucket

CODE = {"code": "print('hello')"}


def _submit(url: str, body: dict | None = None) -> dict:
    response = httpx.post(f"{url}/api/eval", json=body or CODE, timeout=30)
    assert response.status_code == 202, response.text
    return response.json()


def _stored(url: str, eval_id: str) -> dict:
    response = httpx.get(f"{url}/api/eval/{eval_id}", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def _celery_messages(broker_redis, queue: str) -> list[dict]:
    return [json.loads(raw) for raw in broker_redis.lrange(queue, 0, -1)]


def test_at_zero_percent_every_evaluation_is_recorded_legacy_and_queued_in_the_queue_service(
    start_gateway, broker_redis, redis_server, queue_service, internal
):
    gateway = start_gateway(broker=redis_server.url, celery_enabled=True, celery_percentage=0)
    queue = internal(queue_service.url)
    queued_before = queue.get("/status").json()["queued"]

    accepted = [_submit(gateway.url) for _ in range(5)]

    for answer in accepted:
        assert answer["status"] == "queued"
        assert answer["backend"] == "legacy"
        assert answer["fallback_from"] is None
        stored = _stored(gateway.url, answer["eval_id"])
        assert (stored["status"], stored["backend"]) == ("queued", "legacy")
        task = queue.get(f"/tasks/{answer['eval_id']}:primary")
        assert task.status_code == 200, task.text
        assert task.json()["state"] == "queued"
    assert queue.get("/status").json()["queued"] == queued_before + 5
    assert broker_redis.llen("default") == 0


def test_at_full_percentage_every_evaluation_lands_in_the_celery_default_queue(
    start_gateway, broker_redis, redis_server
):
    gateway = start_gateway(broker=redis_server.url, celery_enabled=True, celery_percentage=1.0)

    accepted = [_submit(gateway.url, {**CODE, "timeout": 12}) for _ in range(5)]

    assert {answer["backend"] for answer in accepted} == {"celery"}
    for answer in accepted:
        assert _stored(gateway.url, answer["eval_id"])["backend"] == "celery"
    assert broker_redis.llen("default") == 5
    assert broker_redis.llen("high") == 0
    message = _celery_messages(broker_redis, "default")[0]
    assert message["headers"]["task"] == "tasks.evaluate_code"
    assert message["headers"]["timelimit"] == [57, 42]  # celery_time_limits(12): hard, soft


def test_a_priority_evaluation_lands_in_the_high_queue(start_gateway, broker_redis, redis_server):
    gateway = start_gateway(broker=redis_server.url, celery_enabled=True, celery_percentage=1.0)

    answer = _submit(gateway.url, {**CODE, "priority": True})

    assert answer["backend"] == "celery"
    assert (broker_redis.llen("high"), broker_redis.llen("default")) == (1, 0)
    stored = _stored(gateway.url, answer["eval_id"])
    assert stored["priority"] is True


@pytest.mark.parametrize(
    "env",
    [
        {"celery_enabled": False, "celery_percentage": 1.0},
        {"celery_enabled": True, "celery_percentage": 1.0, "force_legacy_queue": True},
    ],
    ids=["celery-disabled", "legacy-forced"],
)
def test_disabled_or_forced_legacy_sends_everything_to_legacy(
    start_gateway, broker_redis, redis_server, env
):
    gateway = start_gateway(broker=redis_server.url, **env)

    accepted = [_submit(gateway.url) for _ in range(5)]

    assert {answer["backend"] for answer in accepted} == {"legacy"}
    assert broker_redis.llen("default") == 0


def test_half_percent_splits_by_the_hash_of_the_eval_id_within_tolerance(
    start_gateway, broker_redis, redis_server
):
    gateway = start_gateway(broker=redis_server.url, celery_enabled=True, celery_percentage=0.5)
    batch = {"evaluations": [CODE] * 100}

    accepted = []
    for _ in range(2):
        response = httpx.post(f"{gateway.url}/api/eval-batch", json=batch, timeout=60)
        assert response.status_code == 202, response.text
        accepted += response.json()["evaluations"]

    assert len(accepted) == 200
    for answer in accepted:
        expected = "celery" if bucket(answer["eval_id"]) < 0.5 else "legacy"
        assert answer["backend"] == expected
    on_celery = sum(answer["backend"] == "celery" for answer in accepted)
    assert 0.38 <= on_celery / 200 <= 0.62
    assert broker_redis.llen("default") == on_celery


def test_a_routing_key_keeps_every_evaluation_of_a_client_on_one_path(start_gateway, redis_server):
    gateway = start_gateway(broker=redis_server.url, celery_enabled=True, celery_percentage=0.5)
    expected = "celery" if bucket("tenant-42") < 0.5 else "legacy"

    accepted = [_submit(gateway.url, {**CODE, "routing_key": "tenant-42"}) for _ in range(10)]

    assert {answer["backend"] for answer in accepted} == {expected}
    assert _stored(gateway.url, accepted[0]["eval_id"])["routing_key"] == "tenant-42"


def test_concurrent_submissions_each_land_exactly_once_on_their_path(
    start_gateway, own_queue_service, redis_server, broker_redis, internal
):
    gateway = start_gateway(
        broker=redis_server.url,
        queue=own_queue_service.url,
        celery_enabled=True,
        celery_percentage=0.5,
    )

    with ThreadPoolExecutor(max_workers=16) as pool:
        accepted = list(pool.map(lambda _: _submit(gateway.url), range(64)))

    on_celery = sum(answer["backend"] == "celery" for answer in accepted)
    assert len({answer["eval_id"] for answer in accepted}) == 64
    assert broker_redis.llen("default") == on_celery
    assert internal(own_queue_service.url).get("/status").json()["queued"] == 64 - on_celery
