"""The audit log over storage's HTTP API: recorded once, newest first, bounded, internal only."""

from __future__ import annotations

import uuid
from contextlib import closing
from datetime import UTC, datetime

import httpx
import pytest

from crucible_contracts.limits import MAX_OFFSET
from crucible_contracts.models import AuditEntry
from crucible_runtime.clients import StorageClient


def entry(document: str, version: int, **fields: object) -> AuditEntry:
    body = {
        "document": document,
        "actor": "alice",
        "at": datetime.now(UTC),
        "action": "promote",
        "version_before": version - 1,
        "version_after": version,
        "changes": {"celery_percentage": [0.0, version / 10]},
        "reason": f"step {version}",
        **fields,
    }
    return AuditEntry.model_validate(body)


@pytest.fixture
def document() -> str:
    """A settings document of this test alone (the module's storage is shared)."""
    return f"crucible:migration:test:{uuid.uuid4().hex[:10]}"


def test_entries_come_back_newest_first_with_everything_they_were_recorded_with(
    shared_client, document
):
    recorded = [shared_client.record_audit(entry(document, version)) for version in (2, 3, 4)]
    shared_client.record_audit(entry(f"{document}:other", 2))

    read = shared_client.audit(document=document)

    assert all(created for _, created in recorded)
    assert read == [sent for sent, _ in reversed(recorded)]
    assert [e.version_after for e in read] == [4, 3, 2]
    assert read[0].changes == {"celery_percentage": [0.0, 0.4]}
    assert read[0].at.utcoffset() is not None


def test_limit_and_offset_page_through_the_log(shared_client, document):
    for version in range(1, 8):
        shared_client.record_audit(entry(document, version))

    pages = [
        [e.version_after for e in shared_client.audit(document=document, limit=3, offset=offset)]
        for offset in (0, 3, 6, 9)
    ]

    assert pages == [[7, 6, 5], [4, 3, 2], [1], []]


def test_an_entry_delivered_twice_is_recorded_once_and_the_first_one_wins(shared_client, document):
    first = entry(document, 5)
    again = first.model_copy(update={"reason": "a later, different copy"})

    recorded, created = shared_client.record_audit(first)
    repeated, created_again = shared_client.record_audit(again)

    assert (created, created_again) == (True, False)
    assert repeated == recorded == first
    assert shared_client.audit(document=document) == [first]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 501},
        {"limit": 10**30},
        {"limit": "many"},
        {"offset": -1},
        {"offset": MAX_OFFSET + 1},
        {"offset": 10**30},
        {"document": ""},
        {"document": "d" * 201},
    ],
    ids=[
        "zero-limit",
        "limit-above-max",
        "huge-limit",
        "text-limit",
        "negative-offset",
        "offset-above-max",
        "huge-offset",
        "empty-document",
        "long-document",
    ],
)
def test_out_of_bounds_queries_are_422_naming_the_parameter(shared_http, params):
    response = shared_http.get("/audit", params=params)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert next(iter(params)) in error["message"]


def _valid_body() -> dict:
    return entry("crucible:migration:hostile", 2).model_dump(mode="json")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({key: value for key, value in _valid_body().items() if key != "reason"}, "reason"),
        ({**_valid_body(), "reason": ""}, "reason"),
        ({**_valid_body(), "reason": "r" * 10_001}, "reason"),
        ({**_valid_body(), "audit_id": "../../etc/passwd"}, "audit_id"),
        ({**_valid_body(), "version_after": -1}, "version_after"),
        ({**_valid_body(), "at": "yesterday"}, "at"),
        ({**_valid_body(), "changes": {"celery_percentage": "up"}}, "changes"),
        ({**_valid_body(), "admin": True}, "admin"),
        ([_valid_body()], "body"),
    ],
    ids=[
        "no-reason",
        "empty-reason",
        "huge-reason",
        "bad-audit-id",
        "negative-version",
        "bad-time",
        "changes-not-pairs",
        "unknown-field",
        "a-list",
    ],
)
def test_malformed_entries_are_422_naming_the_field_and_nothing_is_recorded(
    shared_http, body, field
):
    response = shared_http.post("/audit", json=body)
    log = shared_http.get("/audit", params={"document": "crucible:migration:hostile"}).json()

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_input"
    assert field in response.json()["error"]["message"]
    assert log == []


def test_a_body_that_is_not_json_is_422(shared_http):
    response = shared_http.post(
        "/audit", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_input"


def test_the_audit_log_needs_the_internal_key(shared_storage, internal_key, document):
    body = entry(document, 2).model_dump(mode="json")

    with httpx.Client(base_url=shared_storage.url, timeout=10) as http:
        refused = [
            http.post("/audit", json=body),
            http.get("/audit"),
            http.get("/audit", headers={"X-Internal-Key": "wrong"}),
        ]
    with closing(StorageClient(shared_storage.url, internal_key=internal_key)) as client:
        _, created = client.record_audit(entry(document, 2))
        read = client.audit(document=document)

    assert [response.status_code for response in refused] == [401, 401, 401]
    assert created and [e.version_after for e in read] == [2]


# Last in the module: it restarts the module's storage process.
def test_the_audit_log_outlives_a_restart_of_storage(
    session_processes, shared_storage, shared_client, internal_key, document
):
    shared_client.record_audit(entry(document, 2))

    session_processes.restart(shared_storage)

    with closing(StorageClient(shared_storage.url, internal_key=internal_key)) as client:
        assert [e.version_after for e in client.audit(document=document)] == [2]
