"""Events on the Redis stream: appended after commit, and a write that succeeds while Redis is
down."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
import redis

from crucible_contracts.ids import new_eval_id
from crucible_contracts.models import Event, RunCreate, RunUpdate
from crucible_contracts.names import EVENT_ENTRY_FIELDS, EVENTS_STREAM, Backend, EventName, Role
from crucible_contracts.status import Status
from crucible_runtime.pytest_plugin import (
    ManagedProcess,
    ProcessStarter,
    free_port,
    start_redis_server,
    wait_for,
)
from crucible_storage.events import (
    EVENT_PUBLISH_FAILURES,
    EVENTS_PUBLISHED,
    EventPublisher,
    stream_entry,
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


class StreamFollower:
    """Reads EVENTS_STREAM from the entry that was last when it was opened."""

    def __init__(self, url: str) -> None:
        self.redis = redis.Redis.from_url(url, decode_responses=True)
        last = self.redis.xrevrange(EVENTS_STREAM, count=1)
        self.position = last[0][0] if last else "0-0"
        self.waiting: list[dict[str, str]] = []

    def receive(self) -> dict[str, str] | None:
        """The next entry, waiting up to 0.2 s for one."""
        if not self.waiting:
            answer = self.redis.xread({EVENTS_STREAM: self.position}, block=200, count=100)
            for _, entries in answer:
                for entry_id, fields in entries:
                    self.position = entry_id
                    self.waiting.append(fields)
        return self.waiting.pop(0) if self.waiting else None


@pytest.fixture
def subscribe() -> Iterator:
    """Follow EVENTS_STREAM on a Redis URL from now on; returns a function that opens a follower."""
    opened: list[StreamFollower] = []

    def open_follower(url: str) -> StreamFollower:
        opened.append(StreamFollower(url))
        return opened[-1]

    yield open_follower
    for follower in opened:
        follower.redis.close()


def next_event(follower: StreamFollower, eval_id: str, *, timeout: float = 10) -> Event:
    """The next event appended for `eval_id` (events of other evaluations are skipped); its
    entry's filter fields must say what its JSON says."""

    def receive() -> Event | None:
        fields = follower.receive()
        if fields is None:
            return None
        event = Event.model_validate(json.loads(fields["data"]))
        assert fields == stream_entry(event)
        assert tuple(fields) == EVENT_ENTRY_FIELDS
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
    follower = subscribe(events_redis.url)
    client = shared_client
    eval_id = client.create_evaluation(new_evaluation()).eval_id

    created = next_event(follower, eval_id)
    client.update_run(eval_id, Role.PRIMARY, RunUpdate(status=Status.RUNNING, attempts=1))
    running = next_event(follower, eval_id)
    # Published after the commit: whoever hears of it can read it already.
    seen_by_reader = client.get_evaluation(eval_id).status
    client.update_run(eval_id, Role.PRIMARY, RunUpdate(status=Status.RUNNING, attempts=1))
    client.update_run(
        eval_id, Role.PRIMARY, RunUpdate(status=Status.TIMEOUT, detail={"limit_s": 5})
    )
    timed_out = next_event(follower, eval_id)

    assert (created.event, created.status) == (EventName.CREATED, Status.QUEUED)
    assert (running.event, running.status, running.role) == (
        EventName.STATUS_CHANGED,
        Status.RUNNING,
        Role.PRIMARY,
    )
    assert seen_by_reader is Status.RUNNING
    # The duplicate `running` report published nothing: the next event is the timeout.
    assert (timed_out.status, timed_out.detail["limit_s"]) == (Status.TIMEOUT, 5)
    assert {event.backend for event in (created, running, timed_out)} == {Backend.LEGACY}
    # The timeline is what was published, less the evaluation the ending event carried and the
    # run's backend.
    published = [
        event.model_copy(update={"evaluation": None, "backend": None})
        for event in (created, running, timed_out)
    ]
    assert client.events(eval_id) == published


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
    # Published by storage's publishing thread after the answers: counted once it gave up.
    wait_for(
        lambda: failures_counted(shared_http) == before + 2,
        timeout=10,
        what="the two lost events to be counted",
    )
    assert [e.status for e in client.events(eval_id)] == [Status.QUEUED, Status.RUNNING]

    redis_server.start()
    wait_for(lambda: redis.Redis.from_url(redis_server.url).ping(), timeout=10, what="redis")
    follower = subscribe(redis_server.url)
    client.update_run(eval_id, Role.PRIMARY, RunUpdate(status=Status.COMPLETED, exit_code=0))
    assert next_event(follower, eval_id).status is Status.COMPLETED


def test_the_event_that_ends_the_primary_run_carries_the_finished_evaluation(
    shared_client, events_redis, subscribe, new_evaluation
) -> None:
    follower = subscribe(events_redis.url)
    client = shared_client
    eval_id = client.create_evaluation(new_evaluation()).eval_id
    client.add_run(eval_id, RunCreate(role=Role.SHADOW, backend=Backend.CELERY))
    for role in (Role.PRIMARY, Role.SHADOW):
        client.update_run(eval_id, role, RunUpdate(status=Status.RUNNING, attempts=1))
    result = RunUpdate(status=Status.COMPLETED, exit_code=0, output="1\n", runtime_ms=3.5)
    client.update_run(eval_id, Role.PRIMARY, result)
    client.update_run(eval_id, Role.SHADOW, result)

    events = [next_event(follower, eval_id) for _ in range(6)]
    carrying = [event for event in events if event.evaluation is not None]

    assert [(event.role, event.status) for event in carrying] == [(Role.PRIMARY, Status.COMPLETED)]
    finished = carrying[0].evaluation
    assert (finished.status, finished.output, finished.exit_code) == (Status.COMPLETED, "1\n", 0)
    # As that commit left it: the shadow was still running then.
    assert [(run.role, run.status) for run in finished.runs] == [
        (Role.PRIMARY, Status.COMPLETED),
        (Role.SHADOW, Status.RUNNING),
    ]
    now = client.get_evaluation(eval_id)
    assert finished == now.model_copy(update={"runs": [now.runs[0], finished.runs[1]]})


def test_the_events_of_one_commit_and_of_commits_in_a_row_arrive_in_order(
    events_redis, subscribe
) -> None:
    """Each commit's events go out in one pipeline, in order."""
    follower = subscribe(events_redis.url)
    publisher = EventPublisher(events_redis.url)
    eval_id = new_eval_id()
    at = datetime.now(UTC)
    commits = [
        [
            Event(eval_id=eval_id, event=EventName.RETRIED, at=at, detail={"n": commit, "i": i})
            for i in range(3)
        ]
        for commit in range(20)
    ]
    before = EVENTS_PUBLISHED._value.get()
    try:
        for events in commits:
            publisher.publish(events)
        assert publisher.flush(timeout=10)
    finally:
        publisher.close()

    received = [next_event(follower, eval_id).detail for _ in range(60)]
    assert received == [event.detail for events in commits for event in events]
    assert EVENTS_PUBLISHED._value.get() == before + 60


def test_writes_commit_while_events_cannot_be_published(store) -> None:
    """A Redis that refuses connections: every write commits, every event is counted lost."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    publisher = EventPublisher(dead, timeout=0.2)
    store.publisher = publisher
    before = EVENT_PUBLISH_FAILURES._value.get()
    try:
        eval_id = store.create().eval_id
        store.update(eval_id, status=Status.RUNNING)
        store.update(eval_id, status=Status.COMPLETED, output="done")
        assert publisher.flush(timeout=10)
    finally:
        publisher.close()

    assert store.get(eval_id).output == "done"
    assert [event.status for event in store.events(eval_id)] == [
        Status.QUEUED,
        Status.RUNNING,
        Status.COMPLETED,
    ]
    assert EVENT_PUBLISH_FAILURES._value.get() == before + 3


def test_after_an_outage_commits_are_published_again_in_order(redis_server, subscribe) -> None:
    """Lost while Redis is down (counted); then the publishing thread sends the next commit and
    hands back to direct sends, without reordering."""
    publisher = EventPublisher(redis_server.url, timeout=0.2)
    eval_id, at = new_eval_id(), datetime.now(UTC)

    def commit(n: int) -> list[Event]:
        return [Event(eval_id=eval_id, event=EventName.RETRIED, at=at, detail={"n": n})]

    before = EVENT_PUBLISH_FAILURES._value.get()
    try:
        redis_server.stop()
        for n in range(3):
            publisher.publish(commit(n))
        assert publisher.flush(timeout=10)
        lost = EVENT_PUBLISH_FAILURES._value.get() - before

        redis_server.start()
        wait_for(lambda: redis.Redis.from_url(redis_server.url).ping(), timeout=10, what="redis")
        follower = subscribe(redis_server.url)
        for n in range(3, 8):
            publisher.publish(commit(n))
        assert publisher.flush(timeout=10)
    finally:
        publisher.close()

    assert lost == 3
    assert [next_event(follower, eval_id).detail["n"] for _ in range(5)] == [3, 4, 5, 6, 7]
