"""A malformed eval_id is refused with 422 wherever it enters storage, and never gets further."""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import quote

import httpx
import pytest

from crucible_runtime.pytest_plugin import ManagedProcess

# httpx sends no URL past 64 KiB, and uvicorn answers a request line of a MiB with its own 400
# before any app sees it: in a path, the longest hostile id is cut to this.
MAX_PATH_ID = 60_000
FORGED = "abc\nFAKE 2026 INFO forged"
CREATE = {"code": "print(1)", "language": "python", "timeout": 5, "backend": "legacy"}

# Every route with an `{eval_id}`: (method, path after the id, valid body or None).
ID_ROUTES = [
    ("GET", "", None),
    ("POST", "/runs", {"role": "shadow", "backend": "celery"}),
    ("PATCH", "/runs/primary", {"status": "running"}),
    ("POST", "/runs/primary/replay", None),
    ("GET", "/events", None),
    ("PUT", "/comparison", {"outcome": "match"}),
    ("GET", "/comparison", None),
]


@pytest.fixture
def http(shared_http: httpx.Client) -> httpx.Client:
    """The module's storage process on each database (`shared_storage`), with the internal key."""
    return shared_http


def test_a_malformed_eval_id_in_a_new_evaluation_is_refused_and_nothing_is_stored(
    http: httpx.Client, hostile_eval_id: str, eval_id_refused: Callable[..., None]
) -> None:
    before = http.get("/evaluations").json()["total"]

    response = http.post("/evaluations", json={"eval_id": hostile_eval_id, **CREATE})

    eval_id_refused(response, sent=hostile_eval_id)
    assert http.get("/evaluations").json()["total"] == before


@pytest.mark.parametrize(
    ("method", "tail", "body"), ID_ROUTES, ids=[f"{m} {t}" for m, t, _ in ID_ROUTES]
)
def test_a_malformed_eval_id_in_a_path_is_refused(
    http: httpx.Client,
    hostile_eval_id: str,
    eval_id_refused: Callable[..., None],
    method: str,
    tail: str,
    body: dict | None,
) -> None:
    sent = hostile_eval_id[:MAX_PATH_ID]

    response = http.request(method, f"/evaluations/{quote(sent, safe='')}{tail}", json=body)

    eval_id_refused(response, sent=sent, in_path=True)


def test_storage_logs_stay_one_json_record_per_line(
    http: httpx.Client, shared_storage: ManagedProcess
) -> None:
    http.post("/evaluations", json={"eval_id": FORGED, **CREATE})
    http.get(f"/evaluations/{quote(FORGED, safe='')}")

    lines = [line for line in shared_storage.logs(tail=1_000_000).splitlines() if line.strip()]

    assert all(isinstance(json.loads(line), dict) for line in lines), lines
    assert not any(line.startswith("FAKE") for line in lines)
