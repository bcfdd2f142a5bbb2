"""A dead-letter replay goes back to the path its run belongs to, over real processes."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest

from crucible_contracts.ids import new_eval_id
from crucible_contracts.models import DeadLetter
from crucible_contracts.names import Backend
from crucible_runtime.dead_letters import DeadLetterStore

ALICE = {"Authorization": "Bearer alice-operator-token"}
CELERY_QUEUES = ("high", "default", "low", "shadow")


def _given_up_run(storage_http: httpx.Client, *, backend: Backend) -> dict:
    """An evaluation recorded on `backend` whose primary run its consumer gave up (`error`)."""
    eval_id = new_eval_id()
    created = storage_http.post(
        "/evaluations",
        json={
            "eval_id": eval_id,
            "code": "print('again')",
            "language": "python",
            "timeout": 10,
            "backend": backend.value,
        },
    )
    assert created.status_code in (200, 201), created.text
    ended = storage_http.patch(
        f"/evaluations/{eval_id}/runs/primary",
        json={"status": "error", "reason": "executors unreachable after every retry"},
    )
    assert ended.status_code == 200, ended.text
    return {
        "eval_id": eval_id,
        "role": "primary",
        "backend": backend.value,
        "code": "print('again')",
        "language": "python",
        "timeout": 10,
    }


def _celery_messages(broker_redis) -> list[dict]:
    return [json.loads(raw) for queue in CELERY_QUEUES for raw in broker_redis.lrange(queue, 0, -1)]


@pytest.mark.parametrize(
    ("entry_backend", "task_has_backend", "run_backend", "expected"),
    [
        # What both consumers write today: the entry says which path the run belongs to.
        (Backend.LEGACY, True, Backend.LEGACY, Backend.LEGACY),
        # An entry without its own backend: the task's says it.
        (None, True, Backend.LEGACY, Backend.LEGACY),
        # An entry from before the legacy path had dead letters: it was Celery's.
        (None, False, Backend.CELERY, Backend.CELERY),
    ],
)
def test_a_replayed_dead_letter_goes_back_to_the_path_its_run_belongs_to(
    start_gateway,
    redis_server,
    broker_redis,
    own_queue_service,
    storage,
    internal,
    entry_backend,
    task_has_backend,
    run_backend,
    expected,
):
    gateway = start_gateway(
        broker=redis_server.url, queue=own_queue_service.url, celery_enabled=True
    )
    task = _given_up_run(internal(storage.url), backend=run_backend)
    eval_id = task["eval_id"]
    if not task_has_backend:
        del task["backend"]
    entry = DeadLetter(
        eval_id=eval_id,
        role="primary",
        backend=entry_backend,
        task_name="tasks.evaluate_code",
        task_id=f"{eval_id}:primary",
        kwargs={"task": task},
        reason="executors unreachable after every retry",
        attempts=3,
        failed_at=datetime.now(UTC),
    )
    DeadLetterStore(broker_redis).push(entry)

    with httpx.Client(base_url=gateway.url, headers=ALICE, timeout=30) as admin:
        replayed = admin.post(f"/api/admin/dlq/{entry.id}/replay")

        assert replayed.status_code == 200, replayed.text
        assert (replayed.json()["run"]["status"], replayed.json()["run"]["replays"]) == (
            "queued",
            1,
        )
        assert admin.get(f"/api/admin/dlq/{entry.id}").status_code == 404
        depths = admin.get("/api/queue-status").json()

    queued = internal(own_queue_service.url).get(f"/tasks/{eval_id}:primary")
    messages = _celery_messages(broker_redis)
    if expected is Backend.LEGACY:
        assert queued.status_code == 200 and queued.json()["state"] == "queued"
        assert (depths["legacy"]["queued"], depths["celery"]["total"]) == (1, 0)
        assert messages == []
    else:
        assert queued.status_code == 404
        assert (depths["legacy"]["queued"], depths["celery"]["total"]) == (0, 1)
        assert [message["headers"]["id"] for message in messages] == [f"{eval_id}:primary"]
