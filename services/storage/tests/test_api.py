"""The storage HTTP API, driven by the contract's own StorageClient against real processes."""

from __future__ import annotations

from contextlib import closing
from datetime import timedelta

import httpx
import pytest

from crucible_contracts.errors import Conflict, IllegalTransition, InvalidInput, NotFound
from crucible_contracts.ids import new_eval_id
from crucible_contracts.models import RunCreate, RunUpdate
from crucible_contracts.names import Backend, EventName, Role
from crucible_contracts.output import encode_stream, exact_bytes
from crucible_contracts.status import Status
from crucible_runtime.clients import StorageClient
from crucible_storage import repository
from crucible_storage.tables import utcnow

FIVE_DAYS = 5 * 24 * 3600


def test_an_evaluation_is_created_queued_and_read_back(shared_client, new_evaluation) -> None:
    create = new_evaluation(
        backend=Backend.CELERY, stdin="x", memory_mb=128, priority=True, routing_key="user-7"
    )

    created = shared_client.create_evaluation(create)
    read = shared_client.get_evaluation(create.eval_id)

    assert read == created
    assert (read.status, read.backend, read.attempts) == (Status.QUEUED, Backend.CELERY, 0)
    assert (read.stdin, read.memory_mb, read.priority, read.routing_key) == (
        "x",
        128,
        True,
        "user-7",
    )
    assert read.created_at.utcoffset() == timedelta(0)
    assert [(r.role, r.status) for r in read.runs] == [(Role.PRIMARY, Status.QUEUED)]
    (event,) = shared_client.events(create.eval_id)
    assert (event.event, event.status, event.role) == (
        EventName.CREATED,
        Status.QUEUED,
        Role.PRIMARY,
    )


def test_a_duplicate_eval_id_is_a_conflict(shared_client, new_evaluation) -> None:
    create = new_evaluation()
    shared_client.create_evaluation(create)

    with pytest.raises(Conflict):
        other = create.program.model_copy(update={"code": "other"})
        shared_client.create_evaluation(create.model_copy(update={"program": other}))

    assert shared_client.get_evaluation(create.eval_id).code == create.program.code


def test_a_create_is_taken_nested_or_in_the_flat_shape_of_older_gateways(shared_http) -> None:
    program = {"code": "print(2)", "language": "python", "timeout": 7.0, "stdin": "in"}
    nested = {"eval_id": new_eval_id(), "program": program, "backend": "celery"}
    flat = {"eval_id": new_eval_id(), **program, "backend": "celery"}
    mixed = {"eval_id": new_eval_id(), "program": program, "code": "x", "backend": "celery"}

    views = [shared_http.post("/evaluations", json=body) for body in (nested, flat)]
    refused = shared_http.post("/evaluations", json=mixed)

    assert [view.status_code for view in views] == [201, 201]
    for view in views:
        assert {name: view.json()[name] for name in program} == program
    assert refused.status_code == 422


def test_a_run_goes_through_its_life_over_http(shared_client, new_evaluation) -> None:
    eval_id = shared_client.create_evaluation(new_evaluation()).eval_id
    shared_client.update_run(
        eval_id,
        Role.PRIMARY,
        RunUpdate(status=Status.RUNNING, attempts=1, executor_id="executor-3"),
    )
    result = RunUpdate(
        status=Status.COMPLETED, exit_code=0, output="hi\n", error="", runtime_ms=8.5
    )

    done = shared_client.update_run(eval_id, Role.PRIMARY, result)
    again = shared_client.update_run(eval_id, Role.PRIMARY, result)
    with pytest.raises(IllegalTransition) as refused:
        shared_client.update_run(eval_id, Role.PRIMARY, RunUpdate(status=Status.RUNNING))

    assert again == done
    assert refused.value.details["current"] == "completed"
    view = shared_client.get_evaluation(eval_id)
    assert (view.status, view.exit_code, view.output, view.executor_id) == (
        Status.COMPLETED,
        0,
        "hi\n",
        "executor-3",
    )
    assert view.started_at <= view.completed_at
    assert [e.status for e in shared_client.events(eval_id)] == [
        Status.QUEUED,
        Status.RUNNING,
        Status.COMPLETED,
    ]


def test_nul_and_invalid_utf8_are_stored_and_returned_exactly(
    shared_client, new_evaluation
) -> None:
    create = new_evaluation(code="print('\x00')\x00", stdin="a\x00b")
    eval_id = shared_client.create_evaluation(create).eval_id
    shared_client.update_run(eval_id, Role.PRIMARY, RunUpdate(status=Status.RUNNING))
    output, output_base64 = encode_stream(b"\xff\xfe\x00ok")
    result = RunUpdate(
        status=Status.COMPLETED,
        exit_code=0,
        output=output,
        output_base64=output_base64,
        error="warn\x00\n",
    )

    done = shared_client.update_run(eval_id, Role.PRIMARY, result)
    again = shared_client.update_run(eval_id, Role.PRIMARY, result)
    view = shared_client.get_evaluation(eval_id)

    assert again == done
    assert (view.code, view.stdin) == ("print('\x00')\x00", "a\x00b")
    assert exact_bytes(view.output, view.output_base64) == b"\xff\xfe\x00ok"
    assert (view.error, view.error_base64) == ("warn\x00\n", None)
    assert view.runs[0].output_base64 == output_base64


def test_a_shadow_run_is_added_once(shared_client, new_evaluation) -> None:
    eval_id = shared_client.create_evaluation(new_evaluation()).eval_id
    shadow = RunCreate(role=Role.SHADOW, backend=Backend.CELERY)

    added = shared_client.add_run(eval_id, shadow)
    with pytest.raises(Conflict):
        shared_client.add_run(eval_id, shadow)
    with pytest.raises(NotFound):
        shared_client.add_run("f" * 32, shadow)

    assert (added.role, added.backend, added.status) == (Role.SHADOW, Backend.CELERY, Status.QUEUED)
    assert [r.role for r in shared_client.get_evaluation(eval_id).runs] == [
        Role.PRIMARY,
        Role.SHADOW,
    ]


def test_a_shadow_run_created_with_its_evaluation_is_one_transaction(
    shared_client, shared_http, new_evaluation
) -> None:
    create = new_evaluation(backend=Backend.LEGACY, shadow_backend=Backend.CELERY)

    view = shared_client.create_evaluation(create)
    again = shared_http.post("/evaluations", json=create.model_dump(mode="json"))
    same_path = new_evaluation(backend=Backend.LEGACY).model_dump(mode="json")
    refused = shared_http.post("/evaluations", json={**same_path, "shadow_backend": "legacy"})

    runs = {run.role: (run.backend, run.status) for run in view.runs}
    assert runs == {
        Role.PRIMARY: (Backend.LEGACY, Status.QUEUED),
        Role.SHADOW: (Backend.CELERY, Status.QUEUED),
    }
    assert shared_client.get_evaluation(view.eval_id).runs == view.runs
    created = [(e.role, e.event) for e in shared_client.events(view.eval_id)]
    assert created == [(Role.PRIMARY, EventName.CREATED), (Role.SHADOW, EventName.CREATED)]
    assert again.status_code == 409  # nothing of the second one was written
    assert len(shared_client.get_evaluation(view.eval_id).runs) == 2
    assert refused.status_code == 422
    assert "shadow_backend" in refused.text
    with pytest.raises(Conflict):
        shared_client.add_run(view.eval_id, RunCreate(role=Role.SHADOW, backend=Backend.CELERY))


def test_unknown_ids_answer_404_and_bad_input_422(shared_http, new_evaluation) -> None:
    http = shared_http
    unknown = "f" * 32
    assert http.get(f"/evaluations/{unknown}").status_code == 404
    assert http.get(f"/evaluations/{unknown}/events").status_code == 404
    assert http.patch(f"/evaluations/{unknown}/runs/primary", json={}).status_code == 404
    assert http.get(f"/evaluations/{unknown}/comparison").status_code == 404
    eval_id = http.post("/evaluations", json=new_evaluation().model_dump(mode="json")).json()[
        "eval_id"
    ]
    bad = [
        http.patch(f"/evaluations/{eval_id}/runs/third", json={}),
        http.patch(f"/evaluations/{eval_id}/runs/primary", json={"status": "sleeping"}),
        http.patch(f"/evaluations/{eval_id}/runs/primary", json={"colour": "red"}),
        http.post("/evaluations", json={"eval_id": "x"}),
        http.get("/evaluations", params={"status": "sleeping"}),
        http.get("/evaluations", params={"backend": "carrier-pigeon"}),
        http.get("/evaluations", params={"limit": 501}),
        http.get("/evaluations", params={"limit": 0}),
        http.get("/evaluations", params={"offset": -1}),
        http.delete("/evaluations", params={"older_than_seconds": 0}),
        http.delete("/evaluations"),
    ]
    assert [answer.status_code for answer in bad] == [422] * len(bad)
    assert {answer.json()["error"]["code"] for answer in bad} == {"invalid_input"}


def test_a_comparison_is_recorded_once_and_read_back(shared_http, new_evaluation) -> None:
    http = shared_http
    eval_id = http.post("/evaluations", json=new_evaluation().model_dump(mode="json")).json()[
        "eval_id"
    ]
    url = f"/evaluations/{eval_id}/comparison"
    assert http.get(url).status_code == 404
    first = {"outcome": "mismatch", "differing_fields": ["exit_code"], "details": {"p": 0}}

    created = http.put(url, json=first)
    again = http.put(url, json={"outcome": "match"})
    read = http.get(url)

    assert (created.status_code, again.status_code, read.status_code) == (201, 200, 200)
    assert again.json() == created.json() == read.json()
    assert read.json()["outcome"] == "mismatch"
    assert read.json()["differing_fields"] == ["exit_code"]


def test_the_list_filters_on_the_primary_run_and_pages_newest_first(
    start_storage, database_url, new_evaluation
) -> None:
    client = StorageClient(start_storage().url)
    ids = []
    for index in range(7):
        backend = Backend.CELERY if index % 2 else Backend.LEGACY
        ids.append(client.create_evaluation(new_evaluation(backend=backend)).eval_id)
    for eval_id in ids[:3]:
        client.update_run(eval_id, Role.PRIMARY, RunUpdate(status=Status.RUNNING))
    client.add_run(ids[3], RunCreate(role=Role.SHADOW, backend=Backend.CELERY))
    client.update_run(ids[3], Role.SHADOW, RunUpdate(status=Status.RUNNING))
    newest_first = list(reversed(ids))

    everything = client.list_evaluations()
    pages = [client.list_evaluations(limit=3, offset=offset) for offset in (0, 3, 6)]
    running = client.list_evaluations(status="running")
    celery = client.list_evaluations(backend="celery")
    queued_legacy = client.list_evaluations(status="queued", backend="legacy")

    assert [e.eval_id for e in everything.items] == newest_first
    assert (everything.total, everything.limit, everything.offset) == (7, 50, 0)
    assert [[e.eval_id for e in page.items] for page in pages] == [
        newest_first[0:3],
        newest_first[3:6],
        newest_first[6:],
    ]
    assert {page.total for page in pages} == {7}
    assert [e.eval_id for e in running.items] == list(reversed(ids[:3])) and running.total == 3
    assert [e.eval_id for e in celery.items] == [ids[5], ids[3], ids[1]]
    assert [e.eval_id for e in queued_legacy.items] == [ids[6], ids[4]]
    client.close()


def test_delete_by_age_over_http_removes_only_old_evaluations(
    shared_client, shared_database, new_evaluation
) -> None:
    # Days, not minutes: the module's other evaluations share the database and must stay young.
    client = shared_client
    old = [client.create_evaluation(new_evaluation()).eval_id for _ in range(2)]
    young = client.create_evaluation(new_evaluation()).eval_id
    client.update_run(old[1], Role.PRIMARY, RunUpdate(status=Status.RUNNING))
    with shared_database.writer() as session:
        for eval_id in old:
            repository.set_created_at(
                session, eval_id=eval_id, created_at=utcnow() - timedelta(days=10)
            )
        session.commit()

    assert client.delete_older_than(FIVE_DAYS) == 2
    assert client.delete_older_than(FIVE_DAYS) == 0

    assert client.get_evaluation(young).eval_id == young
    for eval_id in old:
        with pytest.raises(NotFound):
            client.get_evaluation(eval_id)
        with pytest.raises(NotFound):
            client.events(eval_id)
    with pytest.raises(InvalidInput):
        client.delete_older_than(-1)


def test_calls_without_the_internal_key_are_refused(
    shared_storage, internal_key, new_evaluation
) -> None:
    create = new_evaluation()

    with httpx.Client(base_url=shared_storage.url) as http:
        refused = http.post("/evaluations", json=create.model_dump(mode="json"))
        wrong = http.get("/evaluations", headers={"X-Internal-Key": "wrong"})
        health, metrics = http.get("/health"), http.get("/metrics")
    with closing(StorageClient(shared_storage.url, internal_key=internal_key)) as client:
        created = client.create_evaluation(create)

    assert (refused.status_code, wrong.status_code) == (401, 401)
    assert refused.json()["error"]["code"] == "unauthorized"
    assert (health.status_code, metrics.status_code) == (200, 200)
    assert created.eval_id == create.eval_id
