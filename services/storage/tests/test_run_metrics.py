"""The run latency histograms: one observation per stage a transition ends, with the span between
the run's own timestamps, labelled by path, role and final status; a repeated or refused report
observes nothing."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from crucible_contracts.errors import IllegalTransition
from crucible_contracts.models import RunCreate, RunUpdate
from crucible_contracts.names import Backend, Role
from crucible_contracts.status import Status
from crucible_storage.tables import utcnow

WAIT = "crucible_run_queue_wait_seconds"
EXECUTION = "crucible_run_execution_seconds"
END_TO_END = "crucible_run_end_to_end_seconds"


def _scraped(url: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a process's /metrics, by name and labels."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _count(samples: dict, name: str, **labels: str) -> float:
    return samples.get((f"{name}_count", frozenset(labels.items())), 0.0)


def _local(name: str, **labels: str) -> float:
    """A sample of this process's registry (the service layer driven in-process)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_each_stage_is_observed_once_over_http(shared_client, shared_storage, new_evaluation):
    before = _scraped(shared_storage.url)
    eval_id = shared_client.create_evaluation(new_evaluation(backend=Backend.CELERY)).eval_id
    shared_client.add_run(eval_id, RunCreate(role=Role.SHADOW, backend=Backend.LEGACY))
    running = RunUpdate(status=Status.RUNNING, attempts=1)
    done = RunUpdate(status=Status.COMPLETED, exit_code=0, output="hi\n")
    shared_client.update_run(eval_id, Role.PRIMARY, running)
    shared_client.update_run(eval_id, Role.PRIMARY, running)  # a repeated report
    shared_client.update_run(eval_id, Role.PRIMARY, done)
    shared_client.update_run(eval_id, Role.PRIMARY, done)  # a duplicate result
    with pytest.raises(IllegalTransition):
        shared_client.update_run(eval_id, Role.PRIMARY, RunUpdate(status=Status.RUNNING))
    shared_client.update_run(eval_id, Role.SHADOW, RunUpdate(status=Status.CANCELLED))
    after = _scraped(shared_storage.url)

    def grew(name: str, **labels: str) -> float:
        return _count(after, name, **labels) - _count(before, name, **labels)

    primary = {"backend": "celery", "role": "primary"}
    shadow = {"backend": "legacy", "role": "shadow"}
    assert grew(WAIT, **primary) == 1
    assert grew(EXECUTION, **primary, status="completed") == 1
    assert grew(END_TO_END, **primary, status="completed") == 1
    # Cancelled while queued: it ended without waiting for or spending time running.
    assert grew(END_TO_END, **shadow, status="cancelled") == 1
    assert grew(WAIT, **shadow) == 0
    assert grew(EXECUTION, **shadow, status="cancelled") == 0


def test_the_spans_come_from_the_runs_own_timestamps(store):
    eval_id = store.create(backend=Backend.LEGACY).eval_id
    # Queued 45 s ago: the wait lands above the 30 s bucket and within the 60 s one.
    store.set_run_times(eval_id, queued_at=utcnow() - timedelta(seconds=45))
    labels = {"backend": "legacy", "role": "primary"}
    wait_30 = _local(f"{WAIT}_bucket", **labels, le="30.0")
    wait_60 = _local(f"{WAIT}_bucket", **labels, le="60.0")
    end_60 = _local(f"{END_TO_END}_bucket", **labels, status="timeout", le="60.0")
    end_120 = _local(f"{END_TO_END}_bucket", **labels, status="timeout", le="120.0")

    store.update(eval_id, status=Status.RUNNING)
    store.set_run_times(eval_id, queued_at=utcnow() - timedelta(seconds=100))
    store.update(eval_id, status=Status.TIMEOUT)

    assert _local(f"{WAIT}_bucket", **labels, le="30.0") == wait_30
    assert _local(f"{WAIT}_bucket", **labels, le="60.0") == wait_60 + 1
    assert _local(f"{END_TO_END}_bucket", **labels, status="timeout", le="60.0") == end_60
    assert _local(f"{END_TO_END}_bucket", **labels, status="timeout", le="120.0") == end_120 + 1


def test_a_replayed_run_waits_from_its_replay_not_its_creation(store):
    eval_id = store.create(backend=Backend.CELERY).eval_id
    store.walk_to(eval_id, Status.ERROR)
    long_ago = utcnow() - timedelta(hours=2)
    store.set_run_times(eval_id, created_at=long_ago, queued_at=long_ago)
    labels = {"backend": "celery", "role": "primary"}
    long_waits = _local(f"{WAIT}_count", **labels) - _local(f"{WAIT}_bucket", **labels, le="600.0")

    store.replay(eval_id)
    store.update(eval_id, status=Status.RUNNING)

    still_long = _local(f"{WAIT}_count", **labels) - _local(f"{WAIT}_bucket", **labels, le="600.0")
    assert still_long == long_waits
