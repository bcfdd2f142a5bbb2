"""A malformed eval_id is refused with 422 wherever it enters the queue-service: a task or a task id."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from urllib.parse import quote

import httpx
import pytest

from crucible_contracts.models import EvalTask
from crucible_queue.legacy_format import TASK_ID_REGEX
from crucible_runtime.pytest_plugin import ManagedProcess, ProcessStarter

APP = "crucible_queue.main:create_app"
# httpx sends no URL past 64 KiB (uvicorn refuses a MiB-long request line itself, with a 400):
# in a path, the longest hostile id is cut to this.
MAX_PATH_ID = 60_000

# Every route with a `{task_id}` (`<eval_id>:<role>`): (method, path after the id, valid body).
TASK_ROUTES = [
    ("GET", "", None),
    ("POST", "/complete", None),
    ("POST", "/fail", {"reason": "it broke"}),
    ("POST", "/requeue", None),
    ("DELETE", "", None),
]


@pytest.fixture(scope="module")
def queue(session_processes: ProcessStarter) -> Iterator[ManagedProcess]:
    """One queue-service for the module (no internal key): refusals leave the queue as it was."""
    managed = session_processes.service(APP, name="queue-hostile", env={"INTERNAL_API_KEY": ""})
    yield managed
    managed.stop()


@pytest.fixture
def http(queue: ManagedProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=queue.url, timeout=10) as client:
        yield client


def test_a_task_with_a_malformed_eval_id_is_refused_and_not_queued(
    http: httpx.Client,
    make_task: Callable[..., EvalTask],
    hostile_eval_id: str,
    eval_id_refused: Callable[..., None],
) -> None:
    task = {**make_task().model_dump(mode="json"), "eval_id": hostile_eval_id}

    response = http.post("/tasks", json=task)

    eval_id_refused(response, sent=hostile_eval_id)
    assert http.get("/status").json()["enqueued_total"] == 0


@pytest.mark.parametrize(
    ("method", "tail", "body"), TASK_ROUTES, ids=[f"{m} {t}" for m, t, _ in TASK_ROUTES]
)
@pytest.mark.parametrize("role_suffix", [":primary", ""], ids=["with-role", "bare"])
def test_a_task_id_with_a_malformed_eval_id_is_refused(
    http: httpx.Client,
    hostile_eval_id: str,
    eval_id_refused: Callable[..., None],
    role_suffix: str,
    method: str,
    tail: str,
    body: dict | None,
) -> None:
    task_id = hostile_eval_id[:MAX_PATH_ID] + role_suffix

    response = http.request(method, f"/tasks/{quote(task_id, safe='')}{tail}", json=body)

    eval_id_refused(response, sent=task_id, field="task_id", pattern=TASK_ID_REGEX, in_path=True)


def test_a_valid_eval_id_with_an_unknown_role_is_refused(
    http: httpx.Client, eval_id_refused: Callable[..., None]
) -> None:
    task_id = f"{'a' * 32}:third"

    response = http.get(f"/tasks/{task_id}")

    eval_id_refused(response, sent=task_id, field="task_id", pattern=TASK_ID_REGEX)
