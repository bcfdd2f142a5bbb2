"""A malformed eval_id is refused with 422 by POST /execute and POST /kill, before any slot or kill."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from urllib.parse import quote

import httpx
import pytest

from crucible_runtime.pytest_plugin import ManagedProcess, ProcessStarter

APP = "crucible_executor.main:create_app"
# httpx sends no URL past 64 KiB (uvicorn refuses a MiB-long request line itself, with a 400):
# in a path, the longest hostile id is cut to this.
MAX_PATH_ID = 60_000


@pytest.fixture(scope="module")
def executor(session_processes: ProcessStarter) -> Iterator[ManagedProcess]:
    """One executor for the module, with one slot: a refused request must never take it."""
    env = {
        "EXECUTOR_ID": "executor-hostile",
        "EXECUTOR_SLOTS": "1",
        "INTERNAL_API_KEY": "",
        "SANDBOX_MODE": "auto",
        # Uids are claimed under a lock, so a range shared by accident is still safe.
        "SANDBOX_UID_BASE": str(900_000 + random.randrange(0, 5_000) * 16),
    }
    managed = session_processes.service(APP, name="executor-hostile", env=env)
    yield managed
    managed.stop()


@pytest.fixture
def http(executor: ManagedProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=executor.url, timeout=30) as client:
        yield client


def test_execute_with_a_malformed_eval_id_is_refused_before_a_slot_is_taken(
    http: httpx.Client, hostile_eval_id: str, eval_id_refused: Callable[..., None]
) -> None:
    body = {"eval_id": hostile_eval_id, "code": "print('must not run')", "timeout": 5}

    response = http.post("/execute", json=body)

    eval_id_refused(response, sent=hostile_eval_id)
    assert http.get("/capacity").json()["busy"] == 0


def test_kill_with_a_malformed_eval_id_is_refused(
    http: httpx.Client, hostile_eval_id: str, eval_id_refused: Callable[..., None]
) -> None:
    sent = hostile_eval_id[:MAX_PATH_ID]

    response = http.post(f"/kill/{quote(sent, safe='')}")

    eval_id_refused(response, sent=sent, in_path=True)


def test_executor_logs_stay_one_json_record_per_line(
    http: httpx.Client, executor: ManagedProcess
) -> None:
    forged = "abc\nFAKE 2026 INFO forged"
    http.post("/execute", json={"eval_id": forged, "code": "print(1)"})
    http.post(f"/kill/{quote(forged, safe='')}")

    lines = [line for line in executor.logs(tail=1_000_000).splitlines() if line.strip()]

    assert all(isinstance(json.loads(line), dict) for line in lines), lines
    assert not any(line.startswith("FAKE") for line in lines)
