"""Events on Redis: published after commit, and a write that succeeds while Redis is down."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import redis

from crucible_contracts.models import Event, RunUpdate
from crucible_contracts.names import EVENTS_CHANNEL, EventName, Role
from crucible_contracts.status import Status
from crucible_runtime.pytest_plugin import (
    ManagedProcess,
    ProcessStarter,
    start_redis_server,
    wait_for,
)


@pytest.fixture(scope="module")
def events_redis(session_processes: ProcessStarter) -> Iterator[ManagedProcess]:
    """The module's Redis, which a test may stop and start again (it is running after each)."""
    server = start_redis_server(session_processes)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shared_storage_env(events_redis: ManagedProcess) -> dict[str, str]:
    """The module's storage processes publish on the module's Redis."""
    return {"REDIS_URL": events_redis.url}


@pytest.fixture
def subscribe() -> Iterator:
    """Subscribe to EVENTS_CHANNEL on a Redis URL; returns a function that waits for events."""
    opened: list[redis.client.PubSub] = []

    def open_subscription(url: str):
        pubsub = redis.Redis.from_url(url).pubsub()
        pubsub.subscribe(EVENTS_CHANNEL)
        # Redis has confirmed the subscription: nothing published from now on can be missed.
        wait_for(
            lambda: (pubsub.get_message(timeout=0.2) or {}).get("type") == "subscribe",
            timeout=5,
            what="the subscription to be confirmed",
        )
        opened.append(pubsub)
        return pubsub

    yield open_subscription
    for pubsub in opened:
        pubsub.close()


def next_event(pubsub, eval_id: str, *, timeout: float = 10) -> Event:
    """The next event published for `eval_id` (events of other evaluations are skipped)."""

    def receive() -> Event | None:
        message = pubsub.get_message(timeout=0.2)
        if message is None or message["type"] != "message":
            return None
        event = Event.model_validate(json.loads(message["data"]))
        return event if event.eval_id == eval_id else None

    return wait_for(receive, timeout=timeout, what=f"an event of {eval_id}")


def failures_counted(http: httpx.Client) -> float:
    text = http.get("/metrics").text
    for line in text.splitlines():
        if line.startswith("crucible_storage_event_publish_failures_total "):
            return float(line.split()[1])
    return 0.0


def test_each_committed_change_is_published_after_it_is_readable(
    shared_client, events_redis, subscribe, new_evaluation
) -> None:
    pubsub = subscribe(events_redis.url)
    client = shared_client
    eval_id = client.create_evaluation(new_evaluation()).eval_id

    created = next_event(pubsub, eval_id)
    client.update_run(eval_id, Role.PRIMARY, RunUpdate(status=Status.RUNNING, attempts=1))
    running = next_event(pubsub, eval_id)
    # Published after the commit: whoever hears of it can read it already.
    seen_by_reader = client.get_evaluation(eval_id).status
    client.update_run(eval_id, Role.PRIMARY, RunUpdate(status=Status.RUNNING, attempts=1))
    client.update_run(
        eval_id, Role.PRIMARY, RunUpdate(status=Status.TIMEOUT, detail={"limit_s": 5})
    )
    timed_out = next_event(pubsub, eval_id)

    assert (created.event, created.status) == (EventName.CREATED, Status.QUEUED)
    assert (running.event, running.status, running.role) == (
        EventName.STATUS_CHANGED,
        Status.RUNNING,
        Role.PRIMARY,
    )
    assert seen_by_reader is Status.RUNNING
    # The duplicate `running` report published nothing: the next event is the timeout.
    assert (timed_out.status, timed_out.detail["limit_s"]) == (Status.TIMEOUT, 5)
    assert client.events(eval_id) == [created, running, timed_out]


def test_writes_succeed_while_redis_is_down_and_publishing_resumes(
    shared_client, shared_http, events_redis, subscribe, new_evaluation
) -> None:
    client, redis_server = shared_client, events_redis
    eval_id = client.create_evaluation(new_evaluation()).eval_id
    before = failures_counted(shared_http)

    redis_server.stop()
    running = client.update_run(eval_id, Role.PRIMARY, RunUpdate(status=Status.RUNNING))
    created_meanwhile = client.create_evaluation(new_evaluation()).eval_id

    assert running.status is Status.RUNNING
    assert client.get_evaluation(eval_id).status is Status.RUNNING
    assert client.get_evaluation(created_meanwhile).status is Status.QUEUED
    assert failures_counted(shared_http) == before + 2
    assert [e.status for e in client.events(eval_id)] == [Status.QUEUED, Status.RUNNING]

    redis_server.start()
    wait_for(lambda: redis.Redis.from_url(redis_server.url).ping(), timeout=10, what="redis")
    pubsub = subscribe(redis_server.url)
    client.update_run(eval_id, Role.PRIMARY, RunUpdate(status=Status.COMPLETED, exit_code=0))
    assert next_event(pubsub, eval_id).status is Status.COMPLETED
