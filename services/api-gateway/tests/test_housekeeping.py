"""Housekeeping against real processes: the purge and the reconciler over a real storage,
queue-service, broker Redis and executor; services that fail mid-round; two gateway replicas."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from crucible_contracts.errors import NotFound
from crucible_contracts.ids import new_eval_id
from crucible_contracts.models import DeadLetter, EvalTask, EvaluationCreate, RunUpdate
from crucible_contracts.names import INTERNAL_KEY_HEADER, Backend, EventName, Role, task_id_for
from crucible_contracts.status import Status
from crucible_gateway.housekeeping.repair import Reconciler
from crucible_gateway.housekeeping.service import Housekeeping, purge_old_evaluations
from crucible_gateway.housekeeping.stuck import CONSUMER_LOST, LOST_BY_QUEUE, Rules
from crucible_gateway.leader import LeaderLease, LeaderLoop
from crucible_gateway.paths import CeleryPath, LegacyPath, Paths
from crucible_gateway.paths.celery_client import CeleryDispatcher
from crucible_runtime.clients import ExecutorPool, QueueServiceClient, StorageClient
from crucible_runtime.dead_letters import DeadLetterStore
from crucible_runtime.pytest_plugin import wait_for

DEFAULT_RULES = Rules(
    queued_after={Backend.LEGACY: 60, Backend.CELERY: 900}, running_grace=120, max_redispatches=3
)


@pytest.fixture
def key(own_storage) -> str:
    return own_storage.env["INTERNAL_API_KEY"]


@pytest.fixture
def storage(own_storage, key) -> Iterator[StorageClient]:
    client = StorageClient(own_storage.url, internal_key=key, timeout=5)
    yield client
    client.close()


@pytest.fixture
def paths(own_queue_service, redis_server, key) -> Iterator[Paths]:
    made = Paths(
        LegacyPath(QueueServiceClient(own_queue_service.url, internal_key=key, timeout=5)),
        CeleryPath(CeleryDispatcher(redis_server.url, connect_timeout=1.0)),
    )
    yield made
    made.close()


@pytest.fixture
def dead_letters(broker_redis) -> DeadLetterStore:
    return DeadLetterStore(broker_redis)


@pytest.fixture
def reconciler(storage, paths, dead_letters) -> Callable[..., Reconciler]:
    """A Reconciler over this test's services; keyword arguments replace its rules or fields."""

    def make(*, executors: ExecutorPool | None = None, **rules: Any) -> Reconciler:
        return Reconciler(
            storage=storage,
            paths=paths,
            executors=executors,
            dead_letters=dead_letters,
            rules=dataclasses.replace(DEFAULT_RULES, **rules),
        )

    return make


@pytest.fixture
def evaluation(storage) -> Callable[..., str]:
    """A new evaluation in storage (queued on `backend`, never handed to any path)."""

    def create(backend: Backend, *, timeout: float = 5) -> str:
        eval_id = new_eval_id()
        storage.create_evaluation(
            EvaluationCreate(
                eval_id=eval_id,
                code="print(1)",
                language="python",
                timeout=timeout,
                backend=backend,
            )
        )
        return eval_id

    return create


def _ago(**delta: float) -> datetime:
    return datetime.now(UTC) - timedelta(**delta)


def _entries(store: DeadLetterStore, eval_id: str) -> list[DeadLetter]:
    return [entry for entry in store.list(limit=1000) if entry.eval_id == eval_id]


def _run(storage: StorageClient, eval_id: str):
    return storage.get_evaluation(eval_id).runs[0]


# --- purge -----------------------------------------------------------------------------------


def test_the_purge_deletes_only_evaluations_older_than_the_retention(storage, evaluation, backdate):
    ages = {"old": timedelta(days=31), "young": timedelta(days=29), "new": timedelta(0)}
    ids = {name: evaluation(Backend.CELERY) for name in ages}
    for name in ("old", "young"):
        backdate(ids[name], created_at=datetime.now(UTC) - ages[name])

    deleted = purge_old_evaluations(storage=storage, older_than_seconds=30 * 86_400)

    assert deleted == 1
    with pytest.raises(NotFound):
        storage.get_evaluation(ids["old"])
    assert storage.get_evaluation(ids["young"]).status is Status.QUEUED
    assert storage.get_evaluation(ids["new"]).status is Status.QUEUED


# --- the reconciler --------------------------------------------------------------------------


def test_legacy_runs_the_queue_lost_are_enqueued_again_until_the_cap(
    storage, paths, dead_letters, reconciler, evaluation, backdate
):
    lost, held, fresh = (evaluation(Backend.LEGACY) for _ in range(3))
    legacy = paths[Backend.LEGACY]
    legacy.submit(
        EvalTask(
            eval_id=held, backend=Backend.LEGACY, code="print(1)", language="python", timeout=5
        )
    )
    for eval_id in (lost, held):
        backdate(eval_id, table="runs", queued_at=_ago(minutes=2))

    first = reconciler(max_redispatches=1).run(datetime.now(UTC)).result()
    requeued = _run(storage, lost)
    (retry,) = [e for e in storage.events(lost) if e.event is EventName.RETRIED]
    # The queue-service lets go of it again (say, another restart); the cap is one re-dispatch.
    legacy.withdraw(lost, Role.PRIMARY)
    second = reconciler(max_redispatches=1).run(datetime.now(UTC)).result()

    assert (first["checked"], first["redispatched"], first["waiting"]) == (2, 1, 1)
    assert first["runs"][0]["eval_id"] == lost
    assert (requeued.status, requeued.attempts) == (Status.QUEUED, 1)
    assert retry.detail["failure"] == LOST_BY_QUEUE
    assert (second["ended_error"], second["waiting"]) == (1, 1)
    given_up = storage.get_evaluation(lost)
    assert given_up.status is Status.ERROR
    assert "enqueued again 1 times" in given_up.reason
    (entry,) = _entries(dead_letters, lost)
    assert (entry.reason, entry.backend) == (given_up.reason, Backend.LEGACY)
    assert entry.kwargs["task"]["backend"] == "legacy"
    assert legacy.holds(held, Role.PRIMARY).held
    assert storage.get_evaluation(held).status is Status.QUEUED
    assert not legacy.holds(fresh, Role.PRIMARY).held  # too young to be looked at
    assert storage.get_evaluation(fresh).status is Status.QUEUED


def test_lost_celery_runs_and_runs_whose_consumer_is_gone_are_sent_again_to_their_paths(
    storage, paths, dead_letters, reconciler, evaluation, backdate, broker_redis
):
    lost = evaluation(Backend.CELERY)
    backdate(lost, table="runs", queued_at=_ago(minutes=20))
    recent = evaluation(Backend.CELERY)
    backdate(recent, table="runs", queued_at=_ago(minutes=5))
    orphans = {backend: evaluation(backend) for backend in Backend}
    slow = evaluation(Backend.LEGACY, timeout=300)
    for eval_id in (*orphans.values(), slow):
        storage.update_run(eval_id, Role.PRIMARY, RunUpdate(status=Status.RUNNING, attempts=1))
    # The orphans' consumers died (their leases, timeout 5 s + 120 s grace, ran out long ago);
    # the slow one is within its lease (timeout 300 s + grace).
    started = {
        **{eval_id: _ago(minutes=10) for eval_id in orphans.values()},
        slow: _ago(seconds=200),
    }
    for eval_id, at in started.items():
        backdate(eval_id, table="runs", started_at=at)
        backdate(eval_id, table="events", at=at)  # its last sign of life, too

    first = reconciler().run(datetime.now(UTC)).result()
    # Messages now wait in the Celery queues: a lost run found then may be one of them.
    waits = evaluation(Backend.CELERY)
    backdate(waits, table="runs", queued_at=_ago(minutes=20))
    second = reconciler().run(datetime.now(UTC)).result()

    assert (first["checked"], first["redispatched"], first["waiting"]) == (4, 3, 1), first
    # The re-dispatch record renews a running run's lease: the copy sent is on its way.
    assert (second["checked"], second["redispatched"], second["waiting"]) == (5, 0, 5), second
    published = [
        json.loads(message)["headers"]["id"] for message in broker_redis.lrange("default", 0, -1)
    ]
    assert sorted(published) == sorted(
        task_id_for(eval_id, Role.PRIMARY) for eval_id in (lost, orphans[Backend.CELERY])
    )
    assert paths[Backend.LEGACY].holds(orphans[Backend.LEGACY], Role.PRIMARY).held
    failures = {lost: LOST_BY_QUEUE, **{eval_id: CONSUMER_LOST for eval_id in orphans.values()}}
    for eval_id, failure in failures.items():
        run = _run(storage, eval_id)
        assert run.status is (Status.QUEUED if eval_id == lost else Status.RUNNING)
        assert run.attempts == (1 if eval_id == lost else 2)
        retried = [e for e in storage.events(eval_id) if e.event is EventName.RETRIED]
        assert [e.detail["failure"] for e in retried] == [failure]
        assert _entries(dead_letters, eval_id) == []
    assert (_run(storage, slow).status, _run(storage, slow).attempts) == (Status.RUNNING, 1)
    assert (_run(storage, recent).status, _run(storage, waits).status) == (Status.QUEUED,) * 2


def test_a_running_run_whose_consumers_keep_dying_ends_error_with_a_dead_letter(
    storage, dead_letters, reconciler, evaluation, backdate
):
    orphan = evaluation(Backend.CELERY)
    storage.update_run(orphan, Role.PRIMARY, RunUpdate(status=Status.RUNNING, attempts=1))
    backdate(orphan, table="runs", started_at=_ago(minutes=10))
    backdate(orphan, table="events", at=_ago(minutes=10))

    result = reconciler(max_redispatches=0).run(datetime.now(UTC)).result()

    assert (result["checked"], result["ended_error"]) == (1, 1)
    view = storage.get_evaluation(orphan)
    assert view.status is Status.ERROR
    assert "consumer is gone" in view.reason and "sent again 0 times" in view.reason
    (entry,) = _entries(dead_letters, orphan)
    assert (entry.reason, entry.backend) == (view.reason, Backend.CELERY)


# --- hostile: services that fail, a leader that loses the lead ------------------------------


def test_a_queue_service_down_counts_the_run_failed_and_the_next_round_sends_it_again(
    storage, paths, reconciler, evaluation, backdate, processes, own_queue_service
):
    lost = evaluation(Backend.LEGACY)
    backdate(lost, table="runs", queued_at=_ago(minutes=2))
    own_queue_service.stop()

    down = reconciler().run(datetime.now(UTC)).result()
    untouched = _run(storage, lost)
    processes.restart(own_queue_service)  # back, with an empty deque
    back = reconciler().run(datetime.now(UTC)).result()

    assert (down["checked"], down["failed"]) == (1, 1)
    assert "could not settle it" in down["runs"][0]["why"]
    assert (untouched.status, untouched.attempts) == (Status.QUEUED, 0)
    assert back["redispatched"] == 1
    assert paths[Backend.LEGACY].holds(lost, Role.PRIMARY).held


def test_a_round_that_loses_the_lead_stops_before_the_next_run(
    storage, reconciler, evaluation, backdate
):
    lost = [evaluation(Backend.LEGACY) for _ in range(3)]
    for eval_id in lost:
        backdate(eval_id, table="runs", queued_at=_ago(minutes=2))
    answers = iter([True, False])

    report = reconciler().run(datetime.now(UTC), proceed=lambda: next(answers, False))

    assert report.stopped and report.result()["redispatched"] == 1
    assert sorted(_run(storage, eval_id).attempts for eval_id in lost) == [0, 0, 1]


def _rounds(job: str, outcome: str) -> float:
    labels = {"job": job, "outcome": outcome}
    return REGISTRY.get_sample_value("crucible_housekeeping_rounds_total", labels) or 0.0


def test_with_storage_down_rounds_are_skipped_and_the_leaders_loop_goes_on(
    storage, reconciler, evaluation, backdate, processes, own_storage, state_redis
):
    lease = LeaderLease(state_redis, key=f"test:leader:{uuid.uuid4().hex}", ttl_seconds=5)
    loop = LeaderLoop(lease, poll=0.1)
    housekeeping = Housekeeping(
        reconciler=reconciler(),
        storage=storage,
        retention_seconds=30 * 86_400,
        reconcile_interval=0.2,
        purge_interval=0.2,
        still_leader=loop.still_leader,
    )
    for job in housekeeping.jobs():
        loop.add(job)
    lost = evaluation(Backend.LEGACY)
    backdate(lost, table="runs", queued_at=_ago(minutes=2))
    own_storage.stop()
    skipped = {job: _rounds(job, "skipped") for job in ("reconcile", "purge")}
    done = _rounds("reconcile", "done")

    loop.start()
    try:
        for job in ("reconcile", "purge"):
            wait_for(
                lambda job=job: _rounds(job, "skipped") >= skipped[job] + 2,
                timeout=15,
                what=f"{job} rounds to be skipped while storage is down",
            )
        processes.restart(own_storage)
        wait_for(
            lambda: _run(storage, lost).attempts == 1,
            timeout=15,
            what="the first round after storage came back to send the lost run again",
        )
    finally:
        loop.stop()

    assert _rounds("reconcile", "done") > done


# --- two gateway replicas --------------------------------------------------------------------


def _metric(url: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def test_of_two_gateway_replicas_only_the_leader_reconciles(
    start_gateway, own_storage, own_queue_service, redis_server, storage, evaluation
):
    fast = {
        "storage_url": own_storage.url,
        "queue": own_queue_service.url,
        "broker": redis_server.url,
        "migration_key_prefix": f"crucible:migration:test:{uuid.uuid4().hex[:10]}",
        "reconcile_interval_seconds": "0.2",
        "reconcile_queued_after_seconds": "0.5",
        "reconcile_max_redispatches": "50",
    }
    replicas = [start_gateway(**fast) for _ in range(2)]
    lost = [evaluation(Backend.LEGACY) for _ in range(4)]
    rounds = "crucible_housekeeping_rounds_total"

    wait_for(
        lambda: all(_run(storage, eval_id).attempts == 1 for eval_id in lost),
        timeout=20,
        what="the leader to enqueue every lost run again",
    )
    # Let several more rounds pass: the queue-service holds them now, so nobody sends them again.
    leader = next(r for r in replicas if httpx.get(f"{r.url}/api/status").json()["leader"])
    before = _metric(leader.url, rounds, job="reconcile")
    wait_for(
        lambda: _metric(leader.url, rounds, job="reconcile") >= before + 5,
        timeout=20,
        what="five more reconcile rounds",
    )

    follower = next(r for r in replicas if r is not leader)
    assert _metric(follower.url, rounds, job="reconcile") == 0
    assert _metric(follower.url, "crucible_housekeeping_runs_total") == 0
    assert _metric(leader.url, "crucible_housekeeping_runs_total", action="redispatched") == 4
    for eval_id in lost:
        retries = [e for e in storage.events(eval_id) if e.event is EventName.RETRIED]
        assert [e.detail["failure"] for e in retries] == [LOST_BY_QUEUE]
        answer = httpx.get(
            f"{own_queue_service.url}/tasks/{task_id_for(eval_id, Role.PRIMARY)}",
            headers={INTERNAL_KEY_HEADER: own_queue_service.env["INTERNAL_API_KEY"]},
        )
        assert answer.json()["state"] == "queued"

    # The leader goes away: the follower takes over the next rounds.
    leader.stop()
    wait_for(
        lambda: _metric(follower.url, rounds, job="reconcile") > 0,
        timeout=20,
        what="the follower to take the lead and reconcile",
    )
