"""Concurrent updates to one run: the compare-and-set lets exactly one writer win."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import text

from crucible_contracts.errors import IllegalTransition
from crucible_contracts.ids import new_eval_id
from crucible_contracts.models import EvaluationView
from crucible_contracts.names import EventName, Role
from crucible_contracts.status import TERMINAL, Status
from crucible_runtime.pytest_plugin import wait_for
from crucible_storage import hot

WRITERS = 10
ROUNDS = 4
ENDS = sorted(TERMINAL)


def test_a_compare_and_set_on_a_stale_status_changes_nothing(store) -> None:
    eval_id = store.create().eval_id
    store.update(eval_id, status=Status.RUNNING)

    with store.database.writer() as session:
        lost = hot.compare_and_set_run(
            session.connection(),
            eval_id=eval_id,
            role=Role.PRIMARY,
            expected_status=Status.QUEUED,
            values={"status": Status.CANCELLED},
            attempts=None,
        )
        session.commit()

    assert lost is None
    assert store.get(eval_id).status is Status.RUNNING


@pytest.mark.parametrize(
    ("second", "outcome"), [(Status.FAILED, "refused"), (Status.COMPLETED, "idempotent")]
)
def test_a_writer_blocked_behind_a_commit_reads_again_and_decides(
    pg_store, second: Status, outcome: str
) -> None:
    """PostgreSQL: B has read `running` and waits on A's row lock; A commits `completed` first."""
    eval_id = pg_store.create().eval_id
    pg_store.update(eval_id, status=Status.RUNNING)
    with pg_store.database.writer() as first, ThreadPoolExecutor(1) as pool:
        won = hot.compare_and_set_run(
            first.connection(),
            eval_id=eval_id,
            role=Role.PRIMARY,
            expected_status=Status.RUNNING,
            values={"status": Status.COMPLETED, "output": "first"},
            attempts=None,
        )
        assert won is not None
        blocked = pool.submit(pg_store.update, eval_id, status=second, output="second")
        wait_for(lambda: _lock_waiters(pg_store.database) > 0, timeout=10, what="a lock wait")
        first.commit()

        if outcome == "refused":
            with pytest.raises(IllegalTransition) as refused:
                blocked.result(timeout=10)
            assert refused.value.details["current"] == "completed"
        else:
            assert blocked.result(timeout=10).output == "first"

    final = pg_store.get(eval_id)
    assert (final.status, final.output) == (Status.COMPLETED, "first")


def _lock_waiters(database) -> int:
    with database.engine.connect() as connection:
        query = text(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return connection.execute(query).scalar_one()


def test_conflicting_results_sent_at_once_over_http_have_one_winner(start_storage) -> None:
    storage = start_storage()
    with httpx.Client(base_url=storage.url, timeout=30) as http:
        for _ in range(ROUNDS):
            _race_on_one_evaluation(http, storage.url)


def _race_on_one_evaluation(http: httpx.Client, url: str) -> None:
    eval_id = new_eval_id()
    body = {"eval_id": eval_id, "code": "", "language": "python", "timeout": 1, "backend": "celery"}
    assert http.post("/evaluations", json=body).status_code == 201
    assert http.patch(f"/evaluations/{eval_id}/runs/primary", json={"status": "running"}).is_success
    start = threading.Barrier(WRITERS)

    def report(writer: int) -> tuple[int, httpx.Response]:
        update = {"status": ENDS[writer % len(ENDS)], "output": f"writer-{writer}"}
        with httpx.Client(base_url=url, timeout=30) as own:
            own.get("/health")  # connect first, so that the PATCHes leave together
            start.wait(timeout=10)
            return writer, own.patch(f"/evaluations/{eval_id}/runs/primary", json=update)

    with ThreadPoolExecutor(WRITERS) as pool:
        answers = list(pool.map(report, range(WRITERS)))

    final = EvaluationView.model_validate(http.get(f"/evaluations/{eval_id}").json())
    winners = [
        writer
        for writer, answer in answers
        if answer.status_code == 200 and answer.json()["output"] == f"writer-{writer}"
    ]
    assert len(winners) == 1, [(w, a.status_code, a.text) for w, a in answers]
    (winner,) = winners
    assert (final.status, final.output) == (ENDS[winner % len(ENDS)], f"writer-{winner}")
    for _, answer in answers:
        if answer.status_code == 200:  # the winner, or an idempotent report of its status
            assert (answer.json()["status"], answer.json()["output"]) == (
                final.status,
                final.output,
            )
        else:
            assert answer.status_code == 409, answer.text
            error = answer.json()["error"]
            assert (error["code"], error["details"]["current"]) == (
                "illegal_transition",
                final.status,
            )
    events = http.get(f"/evaluations/{eval_id}/events").json()
    ends = [
        e["status"]
        for e in events
        if e["event"] == EventName.STATUS_CHANGED and e["status"] in ENDS
    ]
    assert ends == [final.status]
