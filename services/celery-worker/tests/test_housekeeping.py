"""Beat schedules the purge of old evaluations; Flower runs against the same app."""

from __future__ import annotations

import sys

import httpx

from crucible_contracts.errors import NotFound
from crucible_contracts.models import RunUpdate
from crucible_contracts.names import Role
from crucible_contracts.pytest_plugin import free_port, wait_for
from crucible_contracts.status import Status


def _celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "crucible_worker.main:app", *args]


def test_beat_schedules_the_purge_of_old_evaluations(
    processes, start_storage, start_worker, dead_url, submit, tmp_path
):
    service, storage = start_storage()
    # Keep evaluations one second, purge every second.
    housekeeping = {"RETENTION_DAYS": str(1 / 86_400), "PURGE_INTERVAL_SECONDS": "1"}
    worker = start_worker(storage_url=service.url, executor_urls=[dead_url()], **housekeeping)

    def cancel(eval_id: str) -> None:
        storage.update_run(eval_id, Role.PRIMARY, RunUpdate(status=Status.CANCELLED))

    eval_id, _ = submit(worker.client, storage, "print('old')", before_send=cancel)
    assert storage.get_evaluation(eval_id).status == Status.CANCELLED

    beat = processes.process(
        "beat",
        _celery("beat", "--loglevel", "INFO"),
        env={
            **worker.process.env,
            **housekeeping,
            "BEAT_SCHEDULE_FILENAME": str(tmp_path / "celerybeat-schedule"),
        },
        ready=lambda m: "beat: Starting" in m.logs(),
    )

    def purged() -> bool:
        try:
            storage.get_evaluation(eval_id)
        except NotFound:
            return True
        return False

    wait_for(purged, timeout=30, what="beat's purge to delete the old evaluation")
    assert "tasks.purge_old_evaluations" in beat.logs()


def test_flower_starts_and_answers_http(processes, stack):
    port = free_port()
    flower = processes.process(
        "flower",
        _celery("flower", f"--port={port}", "--address=127.0.0.1"),
        env={**stack.worker.process.env, "FLOWER_UNAUTHENTICATED_API": "true"},
        ready=lambda _: httpx.get(f"http://127.0.0.1:{port}/healthcheck", timeout=1).is_success,
    )

    workers = wait_for(
        lambda: httpx.get(f"http://127.0.0.1:{port}/api/workers", timeout=5).json(),
        timeout=20,
        what="flower to list the worker",
    )
    assert stack.worker.nodename in workers, flower.logs()
