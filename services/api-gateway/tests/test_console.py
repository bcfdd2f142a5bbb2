"""The operator console over a real gateway: its pages are served, and its admin aggregates
(overview, comparisons, one evaluation's events) answer operators only, with clear 4xx."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crucible_contracts.errors import InvalidInput
from crucible_contracts.ids import new_eval_id
from crucible_contracts.models import (
    ComparisonOutcome,
    ComparisonRecord,
    EvaluationCreate,
    RunCreate,
)
from crucible_contracts.names import Backend, Role
from crucible_gateway.console import overview
from crucible_runtime.pytest_plugin import free_port

ALICE = {"X-Operator-Token": "alice-operator-token"}


@pytest.fixture
def console_gateway(start_gateway, redis_server, own_executor):
    """A gateway whose executors are one live executor (two slots) and one that is down."""
    return start_gateway(
        broker=redis_server.url,
        legacy_executor_url=own_executor.url,
        executor_service_url=f"http://127.0.0.1:{free_port()}",
    )


def test_the_pages_are_served_without_credentials_and_nothing_outside_them(api) -> None:
    page = api.get("/console/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "Operator sign-in" in page.text
    script = api.get("/console/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert api.get("/console", follow_redirects=False).status_code in (307, 308)
    for outside in ("/console/../main.py", "/console/%2e%2e/main.py", "/console/nothing.js"):
        assert api.get(outside).status_code == 404, outside


def test_the_aggregates_need_an_operator_and_refuse_bad_input(console_gateway, admin) -> None:
    anonymous = admin(console_gateway.url, headers={})
    wrong = admin(console_gateway.url, headers={"X-Operator-Token": "not-a-token"})
    for path in (
        "/api/admin/overview",
        "/api/admin/comparisons",
        f"/api/admin/evaluations/{new_eval_id()}/events",
    ):
        assert anonymous.get(path).status_code == 401, path
        assert wrong.get(path).status_code == 403, path
    alice = admin(console_gateway.url, headers=ALICE)
    for params in (
        {"window": "soon"},
        {"window": "7h"},
        {"buckets": 0},
        {"buckets": 61},
        {"buckets": "x"},
    ):
        response = alice.get("/api/admin/overview", params=params)
        assert response.status_code == 422, (params, response.text)
    assert "window" in alice.get("/api/admin/overview", params={"window": "7h"}).text


def test_the_overview_shows_runs_queues_and_executors_with_their_slots(
    console_gateway, admin, own_executor
) -> None:
    client = admin(console_gateway.url, headers=ALICE)
    # Nobody drains this gateway's queue-service here: the evaluation waits on the legacy path.
    accepted = client.post("/api/eval", json={"code": "print(1)"})
    assert accepted.status_code == 202, accepted.text

    response = client.get("/api/admin/overview", params={"window": "2m", "buckets": 4})

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["window_seconds"], body["bucket_seconds"], len(body["series"])) == (120, 30, 4)
    assert body["series"][-1]["paths"]["legacy"]["total"] >= 1
    assert body["queues"]["legacy"]["queued"] >= 1
    live, down = body["executors"]
    assert (live["url"], live["ok"], live["executor_id"]) == (own_executor.url, True, "executor-1")
    assert (live["slots"], live["busy"] + live["free"]) == (2, 2)
    assert down["ok"] is False and "unreachable" in down["error"]
    # No Celery worker consumes this broker.
    assert body["workers"] == {"workers": {}, "count": 0}
    assert body["migration"]["celery_enabled"] is False


def test_the_overview_reports_storage_down_beside_the_rest(
    start_gateway, redis_server, own_storage, admin
) -> None:
    gateway = start_gateway(broker=redis_server.url, storage_url=own_storage.url)
    own_storage.stop()

    response = admin(gateway.url, headers=ALICE).get("/api/admin/overview")

    assert response.status_code == 200, response.text
    body = response.json()
    assert "unreachable" in body["series"]["error"]
    assert "queued" in body["queues"]["legacy"]


def test_comparisons_are_listed_for_operators_with_the_disagreeing_first(
    console_gateway, admin, storage_client, storage
) -> None:
    store = storage_client(storage)
    recorded = {}
    for outcome in (ComparisonOutcome.MATCH, ComparisonOutcome.MISMATCH):
        eval_id = new_eval_id()
        store.create_evaluation(
            EvaluationCreate(
                eval_id=eval_id, code="print(1)", language="python", timeout=5, backend="legacy"
            )
        )
        store.add_run(eval_id, RunCreate(role=Role.SHADOW, backend=Backend.CELERY))
        store.record_comparison(
            eval_id, ComparisonRecord(outcome=outcome, differing_fields=["stdout"])
        )
        recorded[outcome] = eval_id
    client = admin(console_gateway.url, headers=ALICE)

    everything = client.get("/api/admin/comparisons", params={"limit": 500}).json()
    mismatches = client.get("/api/admin/comparisons", params={"outcome": "mismatch"}).json()

    order = [item["eval_id"] for item in everything["items"]]
    assert order.index(recorded["mismatch"]) < order.index(recorded["match"])
    assert recorded["mismatch"] in [item["eval_id"] for item in mismatches["items"]]
    assert {item["outcome"] for item in mismatches["items"]} == {"mismatch"}
    for params in ({"outcome": "similar"}, {"limit": 0}, {"offset": -1}):
        assert client.get("/api/admin/comparisons", params=params).status_code == 422


def test_an_evaluations_events_are_listed_whatever_its_tenant(console_gateway, admin) -> None:
    client = admin(console_gateway.url, headers=ALICE)
    eval_id = client.post("/api/eval", json={"code": "print(1)"}).json()["eval_id"]

    events = client.get(f"/api/admin/evaluations/{eval_id}/events")

    assert events.status_code == 200, events.text
    assert [event["event"] for event in events.json()][:1] == ["eval.created"]
    assert events.json()[0]["eval_id"] == eval_id
    assert client.get(f"/api/admin/evaluations/{new_eval_id()}/events").status_code == 404
    assert client.get("/api/admin/evaluations/not-an-id/events").status_code == 422


def test_the_series_slices_the_window_into_equal_buckets_oldest_first(
    storage, storage_client
) -> None:
    now = datetime.now(UTC)
    found = overview.series(storage=storage_client(storage), window_seconds=60, buckets=3, now=now)
    assert [(b.since, b.until) for b in found] == [
        (now - timedelta(seconds=60 - 20 * n), now - timedelta(seconds=40 - 20 * n))
        for n in range(3)
    ]
    assert set(found[0].paths) == {"legacy", "celery"}


@pytest.mark.parametrize(("window", "buckets"), [(6 * 3600 + 1, 10), (60, 0), (60, 61)])
def test_check_buckets_names_the_field_out_of_bounds(window, buckets) -> None:
    with pytest.raises(InvalidInput):
        overview.check_buckets(window, buckets)
