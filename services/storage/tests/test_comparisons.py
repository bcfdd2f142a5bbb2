"""Comparisons of primary and shadow runs: which evaluations are due for one, and recording it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from crucible_contracts.errors import InvalidInput, NotFound
from crucible_contracts.models import ComparisonOutcome, ComparisonRecord
from crucible_contracts.names import Backend, Role
from crucible_contracts.status import Status
from crucible_storage import service
from crucible_storage.tables import utcnow


def shadowed(store, *, primary: Status, shadow: Status) -> str:
    """An evaluation whose primary (legacy) and shadow (celery) runs are at those statuses."""
    eval_id = store.create(backend=Backend.LEGACY).eval_id
    store.add_shadow(eval_id, Backend.CELERY)
    store.walk_to(eval_id, primary)
    store.walk_to(eval_id, shadow, role=Role.SHADOW)
    return eval_id


def pending_ids(store, limit: int = 100) -> list[str]:
    with store.database.reader() as session:
        return [view.eval_id for view in service.pending_comparisons(session=session, limit=limit)]


def test_only_shadowed_uncompared_evaluations_with_an_ended_primary_are_pending(store) -> None:
    unshadowed = store.create().eval_id
    store.walk_to(unshadowed, Status.COMPLETED)
    compared = shadowed(store, primary=Status.COMPLETED, shadow=Status.COMPLETED)
    store.compare(compared, ComparisonOutcome.MATCH)
    primary_running = shadowed(store, primary=Status.RUNNING, shadow=Status.COMPLETED)
    primary_queued = shadowed(store, primary=Status.QUEUED, shadow=Status.QUEUED)
    both_ended = shadowed(store, primary=Status.FAILED, shadow=Status.TIMEOUT)
    shadow_running = shadowed(store, primary=Status.COMPLETED, shadow=Status.RUNNING)
    shadow_queued = shadowed(store, primary=Status.CANCELLED, shadow=Status.QUEUED)

    pending = pending_ids(store)

    assert sorted(pending) == sorted([both_ended, shadow_running, shadow_queued])
    assert {unshadowed, compared, primary_running, primary_queued}.isdisjoint(pending)


def test_pending_evaluations_come_ready_first_then_oldest_first_over_http(
    shared_store, shared_client
) -> None:
    # The module's other tests on this database record no shadow runs: these are all pending.
    store = shared_store
    now = utcnow()
    # The evaluations still waiting for their shadow are the oldest: a plain oldest-first list
    # cut at the limit would hide every ready one behind them.
    ages = {
        "waiting_oldest": (Status.RUNNING, 50),
        "waiting_older": (Status.QUEUED, 45),
        "ready_old": (Status.ERROR, 40),
        "ready_mid": (Status.COMPLETED, 20),
        "ready_new": (Status.FAILED, 10),
    }
    ids = {}
    for name, (shadow, minutes_ago) in ages.items():
        ids[name] = shadowed(store, primary=Status.COMPLETED, shadow=shadow)
        store.set_created_at(ids[name], now - timedelta(minutes=minutes_ago))

    everything = shared_client.pending_comparisons()
    first_three = shared_client.pending_comparisons(limit=3)
    with pytest.raises(InvalidInput):
        shared_client.pending_comparisons(limit=0)
    with pytest.raises(InvalidInput):
        shared_client.pending_comparisons(limit=501)

    order = ["ready_old", "ready_mid", "ready_new", "waiting_oldest", "waiting_older"]
    assert [view.eval_id for view in everything] == [ids[name] for name in order]
    assert [view.eval_id for view in first_three] == [ids[name] for name in order[:3]]
    ready_old = everything[0]
    assert [(run.role, run.backend, run.status) for run in ready_old.runs] == [
        (Role.PRIMARY, Backend.LEGACY, Status.COMPLETED),
        (Role.SHADOW, Backend.CELERY, Status.ERROR),
    ]


def test_a_comparison_is_recorded_once_through_the_client(shared_client, new_evaluation) -> None:
    eval_id = shared_client.create_evaluation(new_evaluation()).eval_id
    first = ComparisonRecord(
        outcome=ComparisonOutcome.MISMATCH,
        differing_fields=["stdout"],
        details={"primary": {"backend": "legacy"}, "rules": 1},
    )

    recorded, created = shared_client.record_comparison(eval_id, first)
    again, created_again = shared_client.record_comparison(
        eval_id, ComparisonRecord(outcome=ComparisonOutcome.MATCH)
    )
    read = shared_client.get_comparison(eval_id)

    assert (created, created_again) == (True, False)
    assert again == recorded == read
    assert (read.eval_id, read.outcome, read.differing_fields, read.details) == (
        eval_id,
        ComparisonOutcome.MISMATCH,
        ["stdout"],
        {"primary": {"backend": "legacy"}, "rules": 1},
    )
    with pytest.raises(NotFound):
        shared_client.get_comparison(shared_client.create_evaluation(new_evaluation()).eval_id)
    with pytest.raises(NotFound):
        shared_client.record_comparison("0" * 32, first)


def test_an_unknown_outcome_is_refused_and_records_nothing(shared_http, new_evaluation) -> None:
    created = shared_http.post("/evaluations", json=new_evaluation().model_dump(mode="json"))
    url = f"/evaluations/{created.json()['eval_id']}/comparison"

    refused = shared_http.put(url, json={"outcome": "roughly_the_same"})
    missing = shared_http.put(url, json={"differing_fields": []})
    read = shared_http.get(url)

    assert (refused.status_code, missing.status_code) == (422, 422)
    assert refused.json()["error"]["code"] == "invalid_input"
    assert refused.json()["error"]["details"]["field"] == "outcome"
    assert read.status_code == 404


def test_comparisons_are_listed_disagreeing_first_then_newest_and_filtered(store) -> None:
    now = utcnow()
    recorded = {
        "match_old": (ComparisonOutcome.MATCH, 30),
        "mismatch_old": (ComparisonOutcome.MISMATCH, 20),
        "match_new": (ComparisonOutcome.MATCH_AFTER_NORMALISATION, 1),
        "missing_new": (ComparisonOutcome.SHADOW_MISSING, 2),
    }
    ids = {}
    for name, (outcome, minutes_ago) in recorded.items():
        ids[name] = shadowed(store, primary=Status.COMPLETED, shadow=Status.COMPLETED)
        store.compare(ids[name], outcome)
        store.set_compared_at(ids[name], now - timedelta(minutes=minutes_ago))

    def listed(outcomes=(), limit=50, offset=0):
        with store.database.reader() as session:
            page = service.list_comparisons(
                session=session, outcomes=outcomes, limit=limit, offset=offset
            )
        return page.total, [view.eval_id for view in page.items]

    order = ["missing_new", "mismatch_old", "match_new", "match_old"]
    assert listed() == (4, [ids[name] for name in order])
    assert listed(limit=2, offset=1) == (4, [ids[name] for name in order[1:3]])
    assert listed([ComparisonOutcome.MISMATCH]) == (1, [ids["mismatch_old"]])
    assert listed([ComparisonOutcome.MATCH, ComparisonOutcome.MATCH_AFTER_NORMALISATION]) == (
        2,
        [ids["match_new"], ids["match_old"]],
    )
    assert listed([ComparisonOutcome.BOTH_FAILED]) == (0, [])


def test_the_comparisons_list_over_http_filters_by_outcome_and_refuses_bad_input(
    shared_store, shared_client, shared_http
) -> None:
    mismatch = shadowed(shared_store, primary=Status.COMPLETED, shadow=Status.FAILED)
    shared_store.compare(mismatch, ComparisonOutcome.MISMATCH, differing_fields=["status"])

    page = shared_client.comparisons(outcomes=["mismatch", "both_failed"], limit=500)

    assert mismatch in [view.eval_id for view in page.items]
    assert {view.outcome for view in page.items} <= {"mismatch", "both_failed"}
    found = next(view for view in page.items if view.eval_id == mismatch)
    assert found.differing_fields == ["status"]
    for params in ({"outcome": "similar"}, {"limit": 0}, {"limit": 501}, {"offset": -1}):
        assert shared_http.get("/comparisons", params=params).status_code == 422, params
