"""Queue readings over a real queue-service and a real broker Redis: depth and oldest age of the
legacy deque, each Celery queue and the dead-letter queue, and what a dead source leaves."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from celery import Celery

from crucible_contracts.ids import new_eval_id
from crucible_contracts.models import DeadLetter, EvalTask, Program
from crucible_contracts.names import Backend, Role
from crucible_gateway.paths.celery_client import ENQUEUED_AT_HEADER, CeleryDispatcher
from crucible_gateway.queue_readings import (
    QUEUES,
    SOURCE_BROKER,
    SOURCE_DEAD_LETTER,
    SOURCE_QUEUE_SERVICE,
    CachedQueueReader,
    QueueReader,
    enqueued_at,
)
from crucible_runtime.clients import QueueServiceClient
from crucible_runtime.dead_letters import DeadLetterStore


def _task(*, role: Role = Role.PRIMARY, priority: bool = False) -> EvalTask:
    return EvalTask(
        eval_id=new_eval_id(),
        role=role,
        backend=Backend.CELERY,
        priority=priority,
        program=Program(code="print(1)", language="python", timeout=10),
    )


class Clock:
    """A clock the test sets: ages are then exact, whatever time the machine takes."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def legacy_client(own_queue_service, internal) -> QueueServiceClient:
    key = internal(own_queue_service.url).headers["X-Internal-Key"]
    client = QueueServiceClient(own_queue_service.url, internal_key=key, timeout=5)
    yield client
    client.close()


@pytest.fixture
def dispatcher(redis_server) -> CeleryDispatcher:
    made = CeleryDispatcher(redis_server.url, connect_timeout=1.0)
    yield made
    made.close()


@pytest.fixture
def dead_letters(broker_redis) -> DeadLetterStore:
    return DeadLetterStore(broker_redis)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def reader(legacy_client, broker_redis, dead_letters, clock) -> QueueReader:
    return QueueReader(
        legacy=legacy_client, broker=broker_redis, dead_letters=dead_letters, clock=clock
    )


def test_empty_queues_read_as_depth_zero_and_age_zero(reader):
    readings = reader.read()

    assert readings.errors == {}
    assert [reading.queue for reading in readings.queues] == list(QUEUES)
    assert {(r.depth, r.oldest_age_seconds) for r in readings.queues} == {(0, 0.0)}


def test_a_celery_queue_is_aged_by_its_oldest_message(reader, dispatcher, broker_redis, clock):
    dispatcher.submit(_task())
    first = enqueued_at(broker_redis.lindex("default", -1))
    dispatcher.submit(_task())
    dispatcher.submit(_task(role=Role.SHADOW))
    clock.now = first + 42

    readings = reader.read()

    default, shadow = readings.get("default"), readings.get("shadow")
    assert (default.depth, default.oldest_age_seconds) == (2, 42.0)
    assert shadow.depth == 1 and 0 <= shadow.oldest_age_seconds <= 42
    assert (readings.get("high").depth, readings.get("high").oldest_age_seconds) == (0, 0.0)


def test_the_dispatcher_stamps_every_message_with_when_it_was_published(dispatcher, broker_redis):
    dispatcher.submit(_task(priority=True))

    envelope = json.loads(broker_redis.lindex("high", -1))

    assert isinstance(envelope["headers"][ENQUEUED_AT_HEADER], float)


def test_a_message_published_without_the_header_has_no_known_age(
    reader, redis_server, broker_redis
):
    other = Celery("another-publisher", broker=redis_server.url, set_as_current=False)
    other.send_task("tasks.evaluate_code", kwargs={}, queue="low")
    other.close()

    low = reader.read().get("low")

    assert (low.depth, low.oldest_age_seconds) == (1, None)


@pytest.mark.parametrize(
    "message",
    [
        b"not json at all",
        b"[]",
        b"{}",
        json.dumps({"headers": None}).encode(),
        json.dumps({"headers": {ENQUEUED_AT_HEADER: "yesterday"}}).encode(),
        json.dumps({"headers": {ENQUEUED_AT_HEADER: True}}).encode(),
        b'{"headers": {"crucible_enqueued_at": Infinity}}',
        b'{"headers": {"crucible_enqueued_at": NaN}}',
        b"\xff\xfe",
    ],
    ids=[
        "not-json",
        "list",
        "no-headers",
        "null-headers",
        "text",
        "bool",
        "infinity",
        "nan",
        "bin",
    ],
)
def test_a_malformed_message_is_counted_and_has_no_age(reader, broker_redis, message):
    assert enqueued_at(message) is None
    broker_redis.lpush("default", message)

    default = reader.read().get("default")

    assert (default.depth, default.oldest_age_seconds) == (1, None)


def test_a_message_from_a_clock_ahead_is_not_given_a_negative_age(
    reader, dispatcher, broker_redis, clock
):
    dispatcher.submit(_task())
    clock.now = enqueued_at(broker_redis.lindex("default", -1)) - 60

    assert reader.read().get("default").oldest_age_seconds == 0.0


def test_the_legacy_queue_counts_waiting_tasks_not_leased_ones(reader, legacy_client):
    legacy_client.submit(_task().model_copy(update={"backend": Backend.LEGACY}))
    legacy_client.submit(_task().model_copy(update={"backend": Backend.LEGACY}))

    waiting = reader.read()
    legacy_client.request("GET", "/tasks/next")
    after_lease = reader.read()

    assert waiting.get("legacy").depth == 2
    assert waiting.get("legacy").oldest_age_seconds >= 0
    assert waiting.legacy_status["queued"] == 2
    assert after_lease.get("legacy").depth == 1
    assert after_lease.legacy_status["processing"] == 1


def test_the_dead_letter_queue_is_aged_by_its_first_parked_entry(reader, dead_letters, clock):
    now = datetime(2026, 1, 1, tzinfo=UTC)
    for minutes in (10, 3):
        dead_letters.push(
            DeadLetter(
                task_name="tasks.evaluate_code",
                reason="executors unreachable",
                failed_at=now - timedelta(minutes=minutes),
            )
        )
    clock.now = now.timestamp()

    dead = reader.read().get("dead_letter")

    assert (dead.depth, dead.oldest_age_seconds) == (2, 600.0)
    assert dead_letters.oldest().failed_at == now - timedelta(minutes=10)


def test_a_dead_queue_service_is_reported_and_the_others_still_read(
    reader, own_queue_service, dispatcher
):
    dispatcher.submit(_task())
    own_queue_service.stop()

    readings = reader.read()

    assert set(readings.errors) == {SOURCE_QUEUE_SERVICE}
    assert readings.get("legacy") is None and readings.legacy_status is None
    assert readings.get("default").depth == 1


def test_a_dead_broker_is_reported_and_the_legacy_queue_still_reads(reader, redis_server):
    redis_server.stop()

    readings = reader.read()

    assert set(readings.errors) == {SOURCE_BROKER, SOURCE_DEAD_LETTER}
    assert [reading.queue for reading in readings.queues] == ["legacy"]


def test_the_cache_answers_the_same_readings_until_they_are_ttl_old(reader, dispatcher):
    ticks = Clock(100.0)
    cached = CachedQueueReader(reader, ttl=2.0, clock=ticks)
    before = cached.read()
    dispatcher.submit(_task())

    ticks.now = 101.9
    still = cached.read()
    ticks.now = 102.0
    fresh = cached.read()

    assert still is before and still.get("default").depth == 0
    assert fresh.get("default").depth == 1
